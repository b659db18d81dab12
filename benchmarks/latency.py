"""Glass-to-glass latency and the cost of aiortc's bitrate caps, measured through real WebRTC.

Latency: the server stamps every frame's number into a corner of the picture it encodes
(`server.stamp_frames`); a real aiortc viewer on loopback decodes the video and reads the number
back, so each frame's path is known from capture to "decoded at the viewer", split into:
    queue      capture -> pipeline starts on it (waiting for the pipeline thread)
    <stages>   the pipeline's own stages (detect, track, crop, enhance, composite)
    convert    BGR -> YUV and stamping, once per frame for all viewers
    handoff    result ready -> the viewer's sender takes it (relay + event loop)
    transport  encode + RTP over loopback + jitter buffer + decode at the viewer
Runs in the same process and minute: a baseline (raw demo frames through the same server and
aiortc, no pipeline: decode and encode only), the pipeline with the bicubic engine (the floor),
and the pipeline with the chosen engine, all on the demo at 720p (4+ faces in view). Each run
reports the server's CPU milliseconds per frame it published (process user + system time, all
threads: pipeline, detection, the viewer's encoder, aiortc; the viewer's decode too when it runs
inline), the figure that survives a shared machine.

Bitrate: the enhanced track (640x360 source, upscale x2 -> 1280x720) is received at aiortc's stock
settings (start 0.5 Mbit/s, cap 1.5, moved by receiver feedback) and at pinned rates (feedback
cannot move them, so the codec alone is compared); the PSNR of received vs sent frames is reported
over the whole frame and over the face regions, where the pipeline puts its detail.

Browser (`--browser`): what Chromium receives from `python run.py` as a user starts it. `run.py
serve` on the demo in its own process, a headless Chromium (its own processes, devtools/browser.py)
opening its dashboard in each of `--browser-views` (Split: both tracks; Enhanced: the server sends
and encodes no original), on a fresh server each, 10 s of warm-up after the first decoded frame,
then per second: frames decoded per track from the page's getStats() (`framesDecoded` delta over
the stats' own timestamps), frames the browser dropped, the server's CPU ms per frame it processed
(its /proc CPU time over its /metrics frame count) and Chromium's CPU ms per decoded frame.

    python run.py bench latency [--seconds 15] [--engine fsr|bicubic] [--json out.json]
    python run.py bench latency --browser [--skip-latency --skip-bitrate]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from benchmarks.output import write_json
from devtools.viewer import connect_viewer
from streamer.config import AppConfig, ConfigError, EnhanceConfig, OutputConfig, ServerConfig, SourceConfig
from streamer.run_loop import Processor, run_source
from streamer.server import start_server
from streamer.server.camera import CameraRunner, default_processor
from streamer.server.latency import INDEX_MASK, LatencyLog, read_stamp_from_frame
from streamer.server.signaling import set_video_bitrate
from streamer.stats import FrameCpu, format_table
from streamer.types import Frame, FrameResult, StageTimes

log = logging.getLogger(__name__)

WARMUP_S = 3.0
BROWSER_WARMUP_S = 10.0
SERVE_START_S = 300.0
"""How long the browser row waits for the first decoded frame (server start, engine load, ICE)."""
VIEWER_START_S = 120.0
REPO = Path(__file__).resolve().parents[1]
CAMERA = "bench"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per latency run")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--engine", choices=["fsr", "bicubic"], default="fsr")
    p.add_argument(
        "--upscale",
        type=int,
        default=1,
        help="output scale of the latency run (1 keeps the enhanced track at the source size)",
    )
    p.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    p.add_argument("--bitrate", type=int, default=4000, help="kbit/s for the latency runs")
    p.add_argument(
        "--bitrates",
        default="stock,1500,5000",
        help="settings for the PSNR comparison: 'stock' (aiortc's own, feedback-driven) or kbit/s "
        "values (pinned: receiver feedback cannot move them, so the codec is compared alone)",
    )
    p.add_argument("--psnr-seconds", type=float, default=10.0)
    p.add_argument(
        "--psnr-engine",
        choices=["fsr", "bicubic"],
        default="bicubic",
        help="engine for the PSNR runs; the cheap one keeps the frame rate up, so the cap binds",
    )
    p.add_argument(
        "--codec-kbps",
        default="500,1500,3000,5000,8000",
        help="bitrates for the load-independent codec sweep (aiortc's VP8 encoder at 30 fps timestamps)",
    )
    p.add_argument("--codec-frames", type=int, default=90)
    p.add_argument("--skip-bitrate", action="store_true", help="only the latency runs")
    p.add_argument("--skip-latency", action="store_true", help="no aiortc latency runs")
    p.add_argument(
        "--browser",
        action="store_true",
        help="add the row of a headless Chromium watching `run.py serve` (needs chromium, selenium)",
    )
    p.add_argument(
        "--serve-args",
        default="",
        help="extra `run.py serve` flags for the browser row, as one argument "
        '(--serve-args="--engine bicubic"; default: none, as `python run.py`)',
    )
    p.add_argument(
        "--browser-warmup", type=float, default=BROWSER_WARMUP_S, help="seconds after the first frame"
    )
    p.add_argument(
        "--browser-views",
        nargs="+",
        choices=["split", "enhanced", "original"],
        default=["split", "enhanced"],
        help="one browser row per dashboard view, each on a fresh server (Enhanced: no original sent)",
    )
    p.add_argument(
        "--viewer",
        choices=["process", "inline"],
        default="process",
        help="latency runs: the receiving peer in its own process (like a browser) or in the server's",
    )
    p.add_argument("--json", help="write all results here")


class Passthrough:
    """The baseline 'pipeline': the frame itself, untouched, at no cost."""

    backend_name = "none (raw frames)"
    controls: dict[str, object] = {}

    def process(self, frame: Frame) -> FrameResult:
        return FrameResult(frame, frame.image, [], [], StageTimes({}), time.monotonic())

    def apply(self, changes: dict[str, object]) -> dict[str, object]:
        raise ConfigError("the raw-frames baseline has no live settings")

    def close(self) -> None:
        """Holds nothing."""


class Recording:
    """Wraps the real pipeline to remember faces per frame (for per-face PSNR and face counts)."""

    def __init__(self, inner: Processor, scale: int) -> None:
        self.inner = inner
        self.scale = scale
        self.boxes: dict[int, np.ndarray] = {}
        self.backend_name = inner.backend_name

    @property
    def controls(self) -> dict[str, object]:
        return self.inner.controls

    def process(self, frame: Frame) -> FrameResult:
        result = self.inner.process(frame)
        boxes = np.array([t.box for t in result.tracks], dtype=np.float32).reshape(-1, 4) * self.scale
        self.boxes[frame.index & INDEX_MASK] = boxes
        if len(self.boxes) > 2000:
            self.boxes.pop(next(iter(self.boxes)))
        return result

    def apply(self, changes: dict[str, object]) -> dict[str, object]:
        return self.inner.apply(changes)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Received:
    decoded: dict[int, float] = field(default_factory=dict)
    psnr: list[tuple[float, float | None]] = field(default_factory=list)
    frames: int = 0
    unreadable: int = 0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def face_psnr(sent: np.ndarray, got: np.ndarray, boxes: np.ndarray) -> float | None:
    """PSNR over the union of the face boxes (grown by 25%), where enhancement detail lives."""
    if len(boxes) == 0:
        return None
    h, w = sent.shape[:2]
    mask = np.zeros((h, w), dtype=bool)
    for x1, y1, x2, y2 in boxes:
        pad_x, pad_y = 0.25 * (x2 - x1), 0.25 * (y2 - y1)
        mask[
            max(0, int(y1 - pad_y)) : min(h, int(y2 + pad_y) + 1),
            max(0, int(x1 - pad_x)) : min(w, int(x2 + pad_x) + 1),
        ] = True
    if mask.sum() < 16:
        return None
    return psnr(sent[mask], got[mask])


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64) * 1e3
    if arr.size == 0:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"), "n": 0}
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p95_ms": float(np.percentile(arr, 95)),
        "p99_ms": float(np.percentile(arr, 99)),
        "n": int(arr.size),
    }


def bench_cfg(
    args: argparse.Namespace, width: int, height: int, upscale: int, bitrate: int, engine: str
) -> AppConfig:
    source = SourceConfig(uri="demo", name=CAMERA, demo_width=width, demo_height=height)
    return AppConfig(
        sources=(source,),
        enhance=EnhanceConfig(engine=engine),
        output=OutputConfig(mode="upscale", upscale=upscale),
        # aiortc's own encoder per viewer, whose settings and feedback the bitrate runs compare
        # (bench viewers sets it beside the shared encoder).
        server=ServerConfig(
            port=0,
            codec=args.codec,
            bitrate_kbps=bitrate,
            stamp_frames=True,
            token="bench",
            shared_encoder=False,
        ),
    )


async def run_once(
    cfg: AppConfig,
    seconds: float,
    baseline: bool,
    bitrate_mode: str = "configured",
    measure_psnr: bool = False,
    warmup: float = WARMUP_S,
    viewer_process: bool = False,
) -> dict[str, Any]:
    """bitrate_mode: `configured` (what the server does), `stock` (aiortc's defaults) or `pinned`.
    `viewer_process` receives in a separate process (no PSNR then: the sent frames live here)."""
    latency_log = LatencyLog(capacity=20_000, keep_images=measure_psnr)
    recorder: dict[str, Recording] = {}

    def factory(c: AppConfig, name: str) -> Processor:
        if baseline:
            return Passthrough()
        recorder["r"] = Recording(default_processor(c, name), c.output.upscale)
        return recorder["r"]

    server = await start_server(cfg, processor_factory=factory, latency_log=latency_log)
    if bitrate_mode == "stock":
        set_video_bitrate(None)
    elif bitrate_mode == "pinned":
        set_video_bitrate(cfg.server.bitrate_kbps, pinned=True)
    got = Received()
    measuring = {"on": False}
    cpu = FrameCpu()

    def on_frame(kind: str, frame: av.VideoFrame, t: float) -> None:
        got.frames += 1
        stamp = read_stamp_from_frame(frame)
        if stamp is None:
            got.unreadable += 1
            return
        got.decoded.setdefault(stamp, t)
        if measure_psnr and measuring["on"]:
            sent = latency_log.image("enhanced", stamp)
            boxes = recorder["r"].boxes.get(stamp) if "r" in recorder else None
            if sent is not None:
                image = frame.to_ndarray(format="bgr24")
                got.psnr.append(
                    (
                        psnr(sent, image),
                        face_psnr(sent, image, boxes if boxes is not None else np.zeros((0, 4))),
                    )
                )

    def on_publish() -> None:
        if measuring["on"]:
            cpu.tick()

    try:
        camera = server.state.cameras[CAMERA]
        await asyncio.to_thread(camera.wait_ready, 120)
        if camera.error:
            raise RuntimeError(f"camera failed to start: {camera.error}")
        camera.add_listener(on_publish)
        if viewer_process:
            start, elapsed, kbps = await watch_in_process(
                server.url, cfg.server.codec, warmup, seconds, got, measuring, camera
            )
        else:
            viewer = await connect_viewer(
                server.base_url, server.token, CAMERA, on_frame, tracks=("enhanced",), codec=cfg.server.codec
            )
            await asyncio.sleep(warmup)
            measuring["on"] = True
            start, bytes0 = time.monotonic(), await viewer.bytes_received()
            await asyncio.sleep(seconds)
            elapsed, bytes1 = time.monotonic() - start, await viewer.bytes_received()
            measuring["on"] = False
            await viewer.close()
            kbps = (bytes1 - bytes0) * 8 / 1000 / elapsed if elapsed else 0.0
    finally:
        await server.stop()
        set_video_bitrate(cfg.server.bitrate_kbps)

    parts: dict[str, list[float]] = {}
    faces: list[int] = []
    for stamp, t_decoded in got.decoded.items():
        e = latency_log.get(stamp)
        if not {"capture", "start", "processed", "published", "sent_enhanced"} <= set(e):
            continue
        if not start <= t_decoded <= start + elapsed:
            continue
        parts.setdefault("total", []).append(t_decoded - e["capture"])
        parts.setdefault("queue", []).append(e["start"] - e["capture"])
        for key, value in e.items():
            if key.startswith("stage_"):
                parts.setdefault(key[6:], []).append(value)
        parts.setdefault("convert", []).append(e["published"] - e["processed"])
        parts.setdefault("handoff", []).append(e["sent_enhanced"] - e["published"])
        parts.setdefault("transport", []).append(t_decoded - e["sent_enhanced"])
        if "r" in recorder:
            faces.append(len(recorder["r"].boxes.get(stamp, ())))
    measured = len(parts.get("total", []))
    result: dict[str, Any] = {
        "backend": "none (raw frames)" if baseline else recorder["r"].backend_name,
        "frames_measured": measured,
        "viewer_fps": measured / elapsed if elapsed else 0.0,
        "unreadable_stamps": got.unreadable,
        "kbps_received": kbps,
        "faces_per_frame": float(np.mean(faces)) if faces else 0.0,
        "latency": {k: percentiles(v) for k, v in parts.items()},
        **cpu.summary(),
    }
    if measure_psnr:
        full = [p for p, _ in got.psnr]
        face = [f for _, f in got.psnr if f is not None]
        result["psnr_db"] = float(np.mean(full)) if full else float("nan")
        result["face_psnr_db"] = float(np.mean(face)) if face else float("nan")
        result["psnr_frames"] = len(full)
    return result


def enhanced_clip(engine: str, frames: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`frames` enhanced 1280x720 outputs (640x360 demo, upscale x2) and their face boxes."""
    from streamer.pipeline import Pipeline
    from streamer.sources import open_source

    cfg = AppConfig(enhance=EnhanceConfig(engine=engine), output=OutputConfig(mode="upscale", upscale=2))
    pipeline = Pipeline(cfg, "codec")
    source = open_source(SourceConfig(uri="demo", demo_width=640, demo_height=360))
    source.start()
    images: list[np.ndarray] = []
    boxes: list[np.ndarray] = []

    def keep(result: FrameResult) -> None:
        images.append(result.output)
        boxes.append(np.array([t.box for t in result.tracks], dtype=np.float32).reshape(-1, 4) * 2)

    try:
        run_source(pipeline, source, keep, max_frames=frames, read_timeout=10.0)
    finally:
        source.stop()
        pipeline.close()
    return images, boxes


def codec_sweep(
    images: list[np.ndarray], boxes: list[np.ndarray], kbps_list: list[int]
) -> list[dict[str, Any]]:
    """aiortc's own VP8 encoder and decoder on the same frames, timestamped at 30 fps, at each
    bitrate (pinned): what the cap alone does to the picture, whatever the machine's load."""
    from fractions import Fraction

    from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
    from aiortc.jitterbuffer import JitterFrame

    rows = []
    for kbps in kbps_list:
        set_video_bitrate(kbps, pinned=True)
        encoder, decoder = Vp8Encoder(), Vp8Decoder()
        sent_bytes, full, face = 0, [], []
        for i, (image, bx) in enumerate(zip(images, boxes, strict=True)):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i * 3000, Fraction(1, 90_000)
            payloads, timestamp = encoder.encode(frame)
            sent_bytes += sum(len(p) for p in payloads)
            data = b"".join(vp8_depayload(p) for p in payloads)
            for out in decoder.decode(JitterFrame(data=data, timestamp=timestamp)):
                assert isinstance(out, av.VideoFrame)
                got = out.to_ndarray(format="bgr24")
                full.append(psnr(image, got))
                fp = face_psnr(image, got, bx)
                if fp is not None:
                    face.append(fp)
        seconds = len(images) / 30.0
        rows.append(
            {
                "kbps setting": kbps,
                "kbit/s out": sent_bytes * 8 / 1000 / seconds,
                "PSNR dB": float(np.mean(full[1:])),
                "face PSNR dB": float(np.mean(face[1:])) if face else float("nan"),
                "frames": len(full),
            }
        )
    set_video_bitrate(None)
    return rows


async def watch_in_process(
    url: str,
    codec: str,
    warmup: float,
    seconds: float,
    got: Received,
    measuring: dict[str, bool],
    camera: CameraRunner,
) -> tuple[float, float, float]:
    """Run `python -m devtools.viewer` for warm-up + measurement; fill `got.decoded` from
    its decode times; `measuring` is on during the measurement. The warm-up starts once the
    viewer is connected to `camera`: on a loaded machine the viewer's own start (imports, ICE)
    took longer than warm-up and measurement together, and it was stopped before it watched.
    Returns (start, elapsed, kbit/s over its whole session)."""
    import signal
    import sys

    cmd = [
        sys.executable,
        "-m",
        "devtools.viewer",
        url,
        "--camera",
        CAMERA,
        "--track",
        "enhanced",
        "--seconds",
        "0",
        "--codec",
        codec,
        "--decode-times",
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    deadline = time.monotonic() + VIEWER_START_S
    while camera.viewers == 0 and proc.returncode is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(warmup)
    measuring["on"] = True
    start = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
    measuring["on"] = False
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"viewer process failed: {err.decode()[-1000:]}")
    track = json.loads(out)[f"{CAMERA}/enhanced"]
    got.frames = track["frames"]
    got.unreadable = track["frames"] - track["stamps"]
    got.decoded = {int(k): float(v) for k, v in track["decoded_at"].items()}
    return start, elapsed, float(track["camera_kbps"])


PAGE_STATE = """
const view = window.facestream && [...window.facestream.cams.values()][0];
return view ? {camera: view.name, view: view.viewport.dataset.view, received: view.received} : null;
"""


def process_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes, all their threads (/proc/PID/stat); a
    process that has exited counts 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> list[int]:
    """`root` and every process below it (Chromium's browser, GPU, renderer and utility processes
    under chromedriver)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def frames_processed(base_url: str, token: str, camera: str) -> float:
    """The server's frames_processed counter for `camera`, from its /metrics."""
    request = urllib.request.Request(base_url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    prefix = f'facestream_frames_processed_total{{camera="{camera}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise RuntimeError(f"/metrics has no frame count for camera {camera!r}")


def serve_process(extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    """`python run.py serve` (the demo unless `extra` names a source) on a free port; the process
    and the dashboard URL it prints."""
    cmd = [sys.executable, "run.py", "serve", "--port", "0", "--token", "bench", *extra]
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: nobody reads it while it runs
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("facestream: open "):
            proc.kill()
            proc.wait()
            errors.seek(0)
            raise RuntimeError(
                f"`{' '.join(cmd)}` did not print its URL (exit {proc.poll()}): {errors.read()[-1000:]}"
            )
    return proc, line.split("open ", 1)[1]


def spread(values: list[float]) -> dict[str, float]:
    """Median and p95 of per-second samples; NaN without samples."""
    arr = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "n": 0}
    return {"p50": float(np.median(arr)), "p95": float(np.percentile(arr, 95)), "n": int(arr.size)}


def browser_row(args: argparse.Namespace, view: str) -> dict[str, Any]:
    """A headless Chromium receiving from `run.py serve` (see the module docstring); blocking."""
    from devtools.browser import chromium, have_chromium

    if not have_chromium():
        raise RuntimeError("--browser needs Debian chromium and chromium-driver (scripts/setup.sh --dev)")
    extra = args.serve_args.split()
    proc, url = serve_process(extra)
    base_url = url.split("/?", 1)[0]
    profile = tempfile.TemporaryDirectory(prefix="facestream-bench-chromium-")
    driver = None
    try:
        driver = chromium(Path(profile.name))
        t0 = time.monotonic()
        driver.get(url)
        deadline = t0 + SERVE_START_S
        state = driver.execute_script(PAGE_STATE)
        while not (state and state["received"].get("enhanced", {}).get("framesDecoded", 0) > 0):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"Chromium decoded nothing within {SERVE_START_S:.0f} s (page: {state})")
            time.sleep(0.5)
            state = driver.execute_script(PAGE_STATE)
        first_frame_s = time.monotonic() - t0
        camera = state["camera"]
        if view != "split":
            driver.execute_script(
                "document.querySelector(`button[data-view='${arguments[0]}']`).click();", view
            )
        time.sleep(args.browser_warmup)
        browser_pids = descendants(driver.service.process.pid)  # its renderers exist by now
        samples = []
        for i in range(int(args.seconds) + 1):
            if i:
                time.sleep(1.0)
            samples.append(
                {
                    "t": time.monotonic(),
                    "received": driver.execute_script(PAGE_STATE)["received"],
                    "server_cpu_s": process_cpu_s([proc.pid]),
                    "browser_cpu_s": process_cpu_s(browser_pids),
                    "frames": frames_processed(base_url, "bench", camera),
                }
            )
    finally:
        if driver is not None:
            driver.quit()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        profile.cleanup()
    command = " ".join(["run.py", "serve", *extra])
    return browser_summary(samples, first_frame_s, command, view, args.browser_warmup)


def browser_summary(
    samples: list[dict[str, Any]], first_frame_s: float, command: str, view: str, warmup_s: float
) -> dict[str, Any]:
    """Per-second figures and whole-window totals from the browser row's samples."""

    def delta(a: dict[str, Any], b: dict[str, Any], kind: str, key: str) -> float:
        return float(b["received"].get(kind, {}).get(key, 0) - a["received"].get(kind, {}).get(key, 0))

    def fps(a: dict[str, Any], b: dict[str, Any], kind: str) -> float:
        ra, rb = a["received"].get(kind), b["received"].get(kind)
        if not ra or not rb or rb["at"] <= ra["at"]:
            return float("nan")
        return (rb["framesDecoded"] - ra["framesDecoded"]) / ((rb["at"] - ra["at"]) / 1000)

    def per_frame_ms(a: dict[str, Any], b: dict[str, Any], cpu: str, frames: float) -> float:
        return (b[cpu] - a[cpu]) * 1000 / frames if frames > 0 else float("nan")

    pairs = list(zip(samples[:-1], samples[1:], strict=True))
    first, last = samples[0], samples[-1]
    seconds = last["t"] - first["t"]
    kinds = sorted({k for s in samples for k in s["received"]})
    out: dict[str, Any] = {
        "command": command,
        "view": view,
        "seconds": seconds,
        "warmup_s": warmup_s,
        "first_frame_s": first_frame_s,
        "server_fps": (last["frames"] - first["frames"]) / seconds if seconds else float("nan"),
        "server_cpu_ms_per_frame": per_frame_ms(
            first, last, "server_cpu_s", last["frames"] - first["frames"]
        ),
        "server_cpu_per_second": spread(
            [per_frame_ms(a, b, "server_cpu_s", b["frames"] - a["frames"]) for a, b in pairs]
        ),
        "tracks": {},
    }
    for kind in kinds:
        decoded = delta(first, last, kind, "framesDecoded")
        out["tracks"][kind] = {
            "fps": fps(first, last, kind),
            "fps_per_second": spread([fps(a, b, kind) for a, b in pairs]),
            "frames_decoded": decoded,
            "frames_dropped": delta(first, last, kind, "framesDropped"),
            "chromium_fps_stat": last["received"].get(kind, {}).get("framesPerSecond"),
            "jitter_ms": last["received"].get(kind, {}).get("jitterMs"),
        }
    decoded_all = sum(t["frames_decoded"] for t in out["tracks"].values())
    out["browser_cpu_ms_per_decoded_frame"] = per_frame_ms(first, last, "browser_cpu_s", decoded_all)
    return out


def browser_report(rows: list[dict[str, Any]]) -> str:
    """One line per (view, track): what Chromium received, beside what the server spent."""
    first = rows[0]
    table = []
    for row in rows:
        cpu = row["server_cpu_per_second"]
        for kind, t in row["tracks"].items():
            table.append(
                {
                    "view": row["view"],
                    "track": kind,
                    "received fps": t["fps"],
                    "fps/s p50": t["fps_per_second"]["p50"],
                    "fps/s p95": t["fps_per_second"]["p95"],
                    "dropped": t["frames_dropped"],
                    "server fps": row["server_fps"],
                    "server cpu ms/frame": row["server_cpu_ms_per_frame"],
                    "cpu/s p50": cpu["p50"],
                    "cpu/s p95": cpu["p95"],
                    "Chromium cpu ms/decoded": row["browser_cpu_ms_per_decoded_frame"],
                }
            )
    load = os.getloadavg()
    lines = [
        f"Chromium (headless, its own processes) on the dashboard of `{first['command']}`, each view on a "
        f"fresh server, {first['warmup_s']:.0f} s warm-up after the first frame, {first['seconds']:.0f} s "
        "measured; fps/s and cpu/s: median and p95 of the per-second samples:",
        format_table(table, list(table[0])),
        f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs",
    ]
    for row in rows:
        enhanced = row["tracks"].get("enhanced", {}).get("fps", float("nan"))
        verdict = "met" if enhanced >= 25 else "NOT met"
        lines.append(
            f"{row['view']} view: target >= 25 fps received (enhanced) {verdict} ({enhanced:.1f} fps)"
        )
    return "\n".join(lines)


def latency_table(runs: dict[str, dict[str, Any]]) -> str:
    order = [
        "total",
        "queue",
        "detect",
        "track",
        "crop",
        "enhance",
        "composite",
        "convert",
        "handoff",
        "transport",
    ]
    rows = []
    for part in order:
        row: dict[str, object] = {"part": part}
        present = False
        for name, run in runs.items():
            p = run["latency"].get(part)
            if p is None or p["n"] == 0:
                row.update({f"{name} p50": "-", f"{name} p95": "-", f"{name} p99": "-"})
                continue
            present = True
            row.update({f"{name} p50": p["p50_ms"], f"{name} p95": p["p95_ms"], f"{name} p99": p["p99_ms"]})
        if present:
            rows.append(row)
    columns = ["part"] + [f"{n} {q}" for n in runs for q in ("p50", "p95", "p99")]
    return format_table(rows, columns)


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "conditions": {
            "source": f"demo {args.width}x{args.height} @ 30 fps",
            "engine": args.engine,
            "upscale": args.upscale,
            "codec": args.codec,
            "bitrate_kbps": args.bitrate,
            "seconds": args.seconds,
            "psnr_engine": args.psnr_engine,
            "viewer": f"aiortc peer on loopback ({args.viewer} viewer), enhanced track only",
        }
    }
    if not args.skip_latency:
        results["latency"] = await latency_runs(args)
    if args.browser:
        print(
            f"browser: headless Chromium on `run.py serve {args.serve_args}`, {args.browser_warmup:.0f} s "
            f"warm-up, {args.seconds:.0f} s ...",
            flush=True,
        )
        results["browser"] = [await asyncio.to_thread(browser_row, args, view) for view in args.browser_views]
    if not args.skip_bitrate:
        print(
            f"codec: aiortc VP8 at 30 fps timestamps, {args.codec_frames} enhanced 1280x720 frames ...",
            flush=True,
        )
        images, boxes = await asyncio.to_thread(enhanced_clip, args.psnr_engine, args.codec_frames)
        kbps_list = [int(k) for k in args.codec_kbps.split(",") if k.strip()]
        results["codec_sweep"] = await asyncio.to_thread(codec_sweep, images, boxes, kbps_list)
        set_video_bitrate(args.bitrate)
        results["bitrate"] = {}
        for setting in [s.strip() for s in args.bitrates.split(",") if s.strip()]:
            stock = setting == "stock"
            kbps = args.bitrate if stock else int(setting)
            label = "aiortc stock (0.5 start, 1.5 cap)" if stock else f"{kbps} kbit/s pinned"
            print(f"bitrate: {label}, 640x360 x2 -> 1280x720, {args.psnr_seconds:.0f} s ...", flush=True)
            run_cfg = bench_cfg(args, 640, 360, 2, kbps, args.psnr_engine)
            # Longer warm-up: receiver feedback (REMB) ramps the encoder up from its start value.
            results["bitrate"][label] = await run_once(
                run_cfg,
                args.psnr_seconds,
                baseline=False,
                bitrate_mode="stock" if stock else "pinned",
                measure_psnr=True,
                warmup=8.0,
            )
    return results


async def latency_runs(args: argparse.Namespace) -> dict[str, Any]:
    """The baseline, the bicubic floor and the chosen engine through an aiortc viewer."""
    cfg = bench_cfg(args, args.width, args.height, args.upscale, args.bitrate, args.engine)
    print(f"latency: baseline (raw frames, no pipeline), {args.seconds:.0f} s ...", flush=True)
    separate = args.viewer == "process"
    runs = {"baseline": await run_once(cfg, args.seconds, baseline=True, viewer_process=separate)}
    engines = ["bicubic", args.engine] if args.engine != "bicubic" else ["bicubic"]
    for engine in engines:
        print(f"latency: pipeline ({engine}), {args.seconds:.0f} s ...", flush=True)
        run_cfg = bench_cfg(args, args.width, args.height, args.upscale, args.bitrate, engine)
        name = "pipeline" if engine == args.engine else engine
        runs[name] = await run_once(run_cfg, args.seconds, baseline=False, viewer_process=separate)
    return runs


def latency_report(results: dict[str, Any]) -> list[str]:
    c = results["conditions"]
    lat = results["latency"]
    lines = [
        f"Glass-to-glass latency, capture -> decoded at the viewer ({c['source']}, engine {c['engine']}, "
        f"upscale x{c['upscale']}, {c['codec'].upper()} {c['bitrate_kbps']} kbit/s, {c['viewer']})",
        "",
    ]
    lines.append(latency_table(lat))
    lines.append("")
    for name, run in lat.items():
        lines.append(
            f"{name:9s} backend={run['backend']}  frames={run['frames_measured']}  "
            f"viewer fps={run['viewer_fps']:.1f}  faces/frame={run['faces_per_frame']:.1f}  "
            f"server cpu ms/frame={run['cpu_ms']:.1f} (p50 {run['cpu_p50_ms']:.1f}, "
            f"p95 {run['cpu_p95_ms']:.1f})  "
            f"received={run['kbps_received']:.0f} kbit/s  unreadable stamps={run['unreadable_stamps']}"
        )
    totals = [
        lat[n]["latency"].get("total", {}).get("p50_ms", float("nan")) for n in ("pipeline", "baseline")
    ]
    load = os.getloadavg()
    lines.append(
        f"pipeline adds {totals[0] - totals[1]:.0f} ms at p50 over raw aiortc streaming of the same source "
        f"(load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs)"
    )
    return lines


def report(results: dict[str, Any]) -> str:
    c = results["conditions"]
    lines = latency_report(results) if "latency" in results else []
    if "browser" in results:
        lines += ["", browser_report(results["browser"])]
    if "codec_sweep" in results:
        lines += [
            "",
            f"aiortc's VP8 encoder alone, 30 fps timestamps, 1280x720 enhanced frames (engine "
            f"{c['psnr_engine']}), bitrate pinned; aiortc's stock cap is 1500 kbit/s:",
        ]
        lines.append(
            format_table(
                results["codec_sweep"], ["kbps setting", "kbit/s out", "PSNR dB", "face PSNR dB", "frames"]
            )
        )
    if "bitrate" in results:
        lines += [
            "",
            f"Enhanced track 1280x720 (640x360 source, upscale x2, engine {c['psnr_engine']}): "
            "PSNR of received vs sent frames",
        ]
        rows = [
            {
                "setting": label,
                "received kbit/s": r["kbps_received"],
                "fps": r["viewer_fps"],
                "PSNR dB": r["psnr_db"],
                "face PSNR dB": r["face_psnr_db"],
                "frames": r["psnr_frames"],
                "latency p50 ms": r["latency"].get("total", {}).get("p50_ms", float("nan")),
            }
            for label, r in results["bitrate"].items()
        ]
        lines.append(
            format_table(
                rows,
                ["setting", "received kbit/s", "fps", "PSNR dB", "face PSNR dB", "frames", "latency p50 ms"],
            )
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(logging.WARNING)
    results = asyncio.run(run_all(args))
    print(report(results))
    write_json(args.json, results)
    return 0
