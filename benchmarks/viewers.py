"""What many viewers cost the server: aiortc's per-viewer encoding and the shared encoder, side by
side in one run.

For each mode and viewer count N, a server (demo source, frame stamps on) and N real aiortc
viewers, each in its own process like a browser (`python -m devtools.viewer`, enhanced
track), started one after another so all but the first join a stream already running. Once all
are connected and warmed up, over the measured window:
    cpu s/s      the server process's user+sys CPU seconds per second (viewer processes excluded)
    cpu ms/frame the same per frame the camera published (a loaded machine publishes fewer)
    g2g          glass-to-glass, capture -> decoded at a viewer (the frame stamps), all viewers pooled
    viewer fps   stamped frames decoded per second, median over the viewers
    first frame  a viewer's connection (ICE and DTLS up) -> its first decoded picture, over viewers
    skips        shared encoder: times a viewer's sender fell behind and skipped to a keyframe
The processor is a passthrough by default (`--engine none`: frames as the source makes them), so
the numbers are the video path's; `--engine bicubic|fsr` adds the real pipeline.

    python run.py bench viewers [--viewers 1,4,16] [--seconds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import signal
import sys
import time
from typing import Any

import numpy as np

from benchmarks.latency import REPO, Passthrough, percentiles
from benchmarks.output import write_json
from streamer.config import AppConfig, EnhanceConfig, OutputConfig, ServerConfig, SourceConfig
from streamer.server import RunningServer, start_server
from streamer.server.camera import Processor, default_processor
from streamer.server.latency import LatencyLog
from streamer.server.tracks import PacketTrack
from streamer.stats import format_table

CAMERA = "bench"
MODES = {"per-viewer": False, "shared": True}
CONNECT_TIMEOUT_S = 180.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--viewers", default="1,4,16", help="viewer counts, comma-separated")
    p.add_argument("--modes", default=",".join(MODES), help=f"which of {list(MODES)}, comma-separated")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per case")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after the last viewer connected")
    p.add_argument("--stagger", type=float, default=0.3, help="seconds between viewer starts")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=30.0, help="demo source frame rate")
    p.add_argument("--engine", choices=["none", "bicubic", "fsr"], default="none")
    p.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    p.add_argument("--bitrate", type=int, default=4000, help="kbit/s (aiortc's start and cap per viewer)")
    p.add_argument("--json", help="write all results here")


def bench_cfg(args: argparse.Namespace, viewers: int, shared: bool) -> AppConfig:
    source = SourceConfig(
        uri="demo", name=CAMERA, demo_width=args.width, demo_height=args.height, demo_fps=args.fps
    )
    return AppConfig(
        sources=(source,),
        enhance=EnhanceConfig(engine="bicubic" if args.engine == "none" else args.engine),
        output=OutputConfig(mode="upscale", upscale=1),
        server=ServerConfig(
            port=0,
            codec=args.codec,
            bitrate_kbps=args.bitrate,
            stamp_frames=True,
            token="bench",
            max_peers_total=max(16, viewers),
            max_peers_per_client=max(4, viewers),
            shared_encoder=shared,
        ),
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def start_viewer(server: RunningServer, codec: str) -> asyncio.subprocess.Process:
    cmd = [sys.executable, "-m", "devtools.viewer", server.url, "--camera", CAMERA]
    cmd += ["--track", "enhanced", "--seconds", "0", "--codec", codec, "--decode-times"]
    return await asyncio.create_subprocess_exec(
        *cmd, cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


def connected_peers(server: RunningServer) -> int:
    return sum(pc.connectionState == "connected" for pc in server.state.peers)


def packet_tracks(server: RunningServer) -> list[PacketTrack]:
    senders = [s for pc in server.state.peers for s in pc.getSenders()]
    return [s.track for s in senders if isinstance(s.track, PacketTrack)]


async def sample_queues(server: RunningServer, seconds: float) -> list[int]:
    """Encoded frames waiting in the viewers' senders, every 100 ms (shared encoder only)."""
    depths: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        depths += [t.queued for t in packet_tracks(server)]
        await asyncio.sleep(0.1)
    return depths


async def run_case(args: argparse.Namespace, mode: str, viewers: int) -> dict[str, Any]:
    cfg = bench_cfg(args, viewers, MODES[mode])
    latency_log = LatencyLog(capacity=50_000)

    def factory(c: AppConfig, name: str) -> Processor:
        return Passthrough() if args.engine == "none" else default_processor(c, name)

    server = await start_server(cfg, processor_factory=factory, latency_log=latency_log)
    procs: list[asyncio.subprocess.Process] = []
    try:
        camera = server.state.cameras[CAMERA]
        await asyncio.to_thread(camera.wait_ready, 120)
        if camera.error:
            raise RuntimeError(f"camera failed to start: {camera.error}")
        for _ in range(viewers):
            procs.append(await start_viewer(server, args.codec))
            await asyncio.sleep(args.stagger)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while connected_peers(server) < viewers:
            if time.monotonic() > deadline or any(p.returncode is not None for p in procs):
                raise RuntimeError(f"only {connected_peers(server)} of {viewers} viewers connected")
            await asyncio.sleep(0.1)
        await asyncio.sleep(args.warmup)
        skips0 = sum(t.overflows for t in packet_tracks(server))
        start, cpu0, seq0 = time.monotonic(), cpu_seconds(), camera.latest.seq if camera.latest else 0
        depths = await sample_queues(server, args.seconds)
        elapsed, cpu = time.monotonic() - start, cpu_seconds() - cpu0
        skips = sum(t.overflows for t in packet_tracks(server)) - skips0
        published = (camera.latest.seq if camera.latest else 0) - seq0
        encoders = {"/".join(k): e.frames for k, e in server.state.tracks[CAMERA].encoders.items()}
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        reports = []
        for proc in procs:
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            if proc.returncode != 0 or not out.strip():
                raise RuntimeError(f"viewer process failed: {err.decode()[-1000:]}")
            reports.append(json.loads(out)[f"{CAMERA}/enhanced"])
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await server.stop()
    row = summarize(mode, viewers, reports, latency_log, start, elapsed, cpu, published, encoders)
    row["sender_queue"] = {"mean": float(np.mean(depths)) if depths else 0.0, "max": max(depths, default=0)}
    row["skips"] = skips
    return row


def summarize(
    mode: str,
    viewers: int,
    reports: list[dict[str, Any]],
    latency_log: LatencyLog,
    start: float,
    elapsed: float,
    cpu: float,
    published: int,
    encoders: dict[str, int],
) -> dict[str, Any]:
    g2g: list[float] = []
    fps: list[float] = []
    first: list[float] = []
    kbps: list[float] = []
    for report in reports:
        in_window = 0
        for stamp, decoded in report["decoded_at"].items():
            capture = latency_log.get(int(stamp)).get("capture")
            if capture is not None and start <= decoded <= start + elapsed:
                g2g.append(decoded - capture)
                in_window += 1
        fps.append(in_window / elapsed)
        if report["connected_at"] is not None:
            first.append(report["first_at"] - report["connected_at"])
        kbps.append(report["camera_kbps"])
    return {
        "mode": mode,
        "viewers": viewers,
        "seconds": elapsed,
        "cpu_s_per_s": cpu / elapsed,
        "cpu_ms_per_frame": cpu / published * 1e3 if published else float("nan"),
        "server_fps": published / elapsed,
        "viewer_fps_median": float(np.median(fps)),
        "viewer_kbps_median": float(np.median(kbps)),
        "g2g": percentiles(g2g),
        "first_frame": percentiles(first) | {"max_ms": max(first) * 1e3 if first else float("nan")},
        "first_frame_ms": [round(f * 1e3, 1) for f in first],
        "encoded_frames": encoders,
    }


def table(rows: list[dict[str, Any]]) -> str:
    one = {r["mode"]: r["cpu_s_per_s"] for r in rows if r["viewers"] == 1}
    printable = [
        {
            "mode": r["mode"],
            "viewers": r["viewers"],
            "cpu s/s": r["cpu_s_per_s"],
            "x 1 viewer": r["cpu_s_per_s"] / one[r["mode"]] if r["mode"] in one else float("nan"),
            "cpu ms/frame": r["cpu_ms_per_frame"],
            "server fps": r["server_fps"],
            "viewer fps": r["viewer_fps_median"],
            "kbit/s": r["viewer_kbps_median"],
            "g2g p50 ms": r["g2g"]["p50_ms"],
            "g2g p95 ms": r["g2g"]["p95_ms"],
            "1st frame p50 ms": r["first_frame"]["p50_ms"],
            "1st frame p95 ms": r["first_frame"]["p95_ms"],
            "1st frame max ms": r["first_frame"]["max_ms"],
            "skips": r["skips"],
        }
        for r in rows
    ]
    return format_table(printable, list(printable[0]))


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(v) for v in args.viewers.split(",") if v.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown or not counts or min(counts) < 1:
        raise SystemExit(f"run.py bench viewers: --modes from {list(MODES)}, --viewers positive integers")
    results: dict[str, Any] = {
        "conditions": {
            "source": f"demo {args.width}x{args.height} @ {args.fps:g} fps",
            "engine": args.engine,
            "codec": args.codec,
            "bitrate_kbps": args.bitrate,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "viewer": "aiortc peer per process on loopback, enhanced track",
        },
        "rows": [],
    }
    for mode in modes:
        for n in counts:
            print(f"viewers: {mode}, {n} viewer(s), {args.seconds:g} s ...", flush=True)
            results["rows"].append(await run_case(args, mode, n))
    return results


def report(results: dict[str, Any]) -> str:
    c = results["conditions"]
    head = (
        f"Server cost of N viewers ({c['source']}, engine {c['engine']}, {c['codec'].upper()} "
        f"{c['bitrate_kbps']} kbit/s, {c['viewer']}); cpu: server process user+sys per second"
    )
    return head + "\n\n" + table(results["rows"])


def main(args: argparse.Namespace) -> int:
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(logging.WARNING)
    results = asyncio.run(run_all(args))
    print(report(results))
    write_json(args.json, results)
    return 0
