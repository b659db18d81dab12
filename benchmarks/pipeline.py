"""Pipeline benchmark: the whole CPU pipeline on the demo source and on real videos.

For each clip it runs, in the same process and run: a decode-only baseline (what the source costs
alone), the pipeline with the bicubic engine (the floor), and the pipeline with the configured FSR
engine, each of these file rows twice: its stages in one thread, and overlapped across threads
(`enhance.overlap`, streamer/stage_threads.py), without an output or, with `--encode`, writing
the mp4 as `enhance --out` does. On the demo it adds live rows (background detection, the
`per_frame` engine budget), each with the output encoded as a viewer's sender encodes it
(the shared encoder's VP8 or H.264 at `server.encode_speed`, on the yuv420p frame the camera
prepares), with fp32 and int8 engines (`--live-precisions`). It prints fps, CPU
milliseconds per output frame (process user + system time, all threads: the figure to trust on a
shared machine), p50/p95 per stage, faces per frame and frames dropped, and says how far the demo
(720p, 4+ faces) is from the product goal of 30 fps on one core.

    python run.py bench pipeline [--videos DIR] [--frames N] [--encode] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.output import write_json
from streamer.config import AppConfig, EnhanceConfig, ServerConfig, SourceConfig, validate
from streamer.enhance_job import run_enhance
from streamer.pipeline import STAGES, Pipeline
from streamer.run_loop import run_source
from streamer.sources import open_source
from streamer.stats import FrameCpu, format_table
from streamer.types import FrameResult

SHARED_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
GOAL_FPS = 30.0
GOAL_CPU_MS = 1000.0 / GOAL_FPS
"""30 fps on one core, leaving the other to the browser and the OS."""
CODECS = ("vp8", "h264")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", default=str(SHARED_VIDEOS), help="folder of real clips (skipped when absent)")
    p.add_argument("--frames", type=int, default=90, help="frames per clip and configuration")
    p.add_argument("--max-clips", type=int, default=4, help="how many real clips to include")
    p.add_argument("--engines", default="bicubic,fsr", help="comma-separated engines to compare")
    p.add_argument("--detect-interval", type=int, default=None)
    p.add_argument(
        "--detect-scan",
        choices=["regions", "full"],
        default=None,
        help="detection passes (default: the config's)",
    )
    p.add_argument(
        "--reuse-below", type=float, default=None, help="enhance.reuse_below (default: the config's)"
    )
    p.add_argument(
        "--live-codecs",
        default=",".join(CODECS),
        help="codecs of the live demo rows (one row each, the output encoded; 'none' for no encode)",
    )
    p.add_argument(
        "--live-precisions",
        default="fp32,int8",
        help="enhance.precision of the live demo rows (a row per precision and codec)",
    )
    p.add_argument(
        "--file-overlap",
        default="off,on",
        help="enhance.overlap of the file rows, one row each (off: one thread, on: stages overlapped)",
    )
    p.add_argument(
        "--encode",
        action="store_true",
        help="file rows write their output to an mp4 (x264), as enhance --out",
    )
    p.add_argument("--json", help="write all results here")


def decode_only(source: SourceConfig, frames: int) -> dict[str, Any]:
    src = open_source(source)
    src.start()
    times: list[float] = []
    cpu = FrameCpu()
    n = 0
    t0 = time.perf_counter()
    try:
        while n < frames:
            t = time.perf_counter()
            f = src.read(timeout=10.0)
            if f is None:
                break
            times.append(time.perf_counter() - t)
            cpu.tick()
            n += 1
    finally:
        src.stop()
    wall = time.perf_counter() - t0
    arr = np.asarray(times) * 1e3 if times else np.zeros(1)
    return {
        "frames": n,
        "seconds": wall,
        "fps": n / wall if wall else 0.0,
        "stages": {
            "source": {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95))}
        },
        **cpu.summary(),
    }


class OutputEncoder:
    """The output encoded as `serve` encodes it by default: the shared encoder's `VideoEncoder`
    (streamer/server/encoder.py) at the server's bitrate and `encode_speed`, a keyframe every
    `keyframe_interval_s` at 30 fps, on the yuv420p frame the camera prepares
    (streamer.server.camera.yuv_frame)."""

    def __init__(self, codec: str, server: ServerConfig) -> None:
        from streamer.server.encoder import VideoEncoder

        self.encoder = VideoEncoder(codec, server.bitrate_kbps, server.encode_speed)
        self.gop = max(1, round(30 * server.keyframe_interval_s))
        self.frames = 0
        self.bytes = 0

    def encode(self, image: np.ndarray) -> None:
        from streamer.server.camera import yuv_frame

        frame = yuv_frame(image)
        frame.pts, frame.time_base = self.frames * 3000, Fraction(1, 90_000)
        packet = self.encoder.encode(frame, keyframe=self.frames % self.gop == 0)
        self.bytes += packet.size if packet is not None else 0
        self.frames += 1


def live_settings(cfg: AppConfig, source: SourceConfig, frames: int, codec: str = "none") -> dict[str, Any]:
    """The pipeline as `serve` runs it (background detection, `per_frame` engine budget), fed as
    fast as it takes frames, so its fps is the most a live camera could get through; with
    `codec`, the output is encoded too (part of what a camera costs)."""
    pipe = Pipeline(cfg, source.display_name)
    encoder = OutputEncoder(codec, cfg.server) if codec != "none" else None
    src = open_source(source)
    src.start()
    faces = 0
    cpu = FrameCpu()

    def count(result: FrameResult) -> None:
        nonlocal faces
        faces += len(result.faces)
        if encoder is not None:
            with pipe.stats.time("encode"):
                encoder.encode(result.output)
        cpu.tick()

    t0 = time.perf_counter()
    try:
        n = run_source(pipe, src, count, max_frames=frames, read_timeout=10.0)
    finally:
        src.stop()
        pipe.close()
    wall = time.perf_counter() - t0
    return {
        "frames": n,
        "seconds": wall,
        "fps": n / wall if wall else 0.0,
        "faces_per_frame": faces / max(n, 1),
        "faces_enhanced_per_frame": pipe.faces_enhanced / max(n, 1),
        "faces_reused_per_frame": pipe.faces_reused / max(n, 1),
        "engine": pipe.backend_name,
        "codec": codec,
        "encode_speed": cfg.server.encode_speed if codec != "none" else None,
        "precision": cfg.enhance.precision,
        "stages": pipe.stats.summary(),
        "source_stats": {},
        **cpu.summary(),
    }


def file_row(cfg: AppConfig, source: SourceConfig, args: argparse.Namespace) -> dict[str, Any]:
    """One file job (`run.py enhance`) of `args.frames` frames, with CPU per frame."""
    cpu = FrameCpu()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4" if args.encode else None
        summary = run_enhance(cfg, source, out_path=out, max_frames=args.frames, on_result=cpu.on_result)
    return {**summary, **cpu.summary()}


def overlap_lines(results: list[dict[str, Any]]) -> list[str]:
    """Each clip and engine, overlapped against one thread (both rows of this run)."""
    lines = []
    for r in results:
        seq = [s for s in results if s["clip"] == r["clip"] and s["config"] + " overlap" == r["config"]]
        if seq:
            s = seq[0]
            lines.append(
                f"Overlap, {r['clip']}, {s['config']}: {s['fps']:.1f} -> {r['fps']:.1f} fps "
                f"({r['fps'] / s['fps']:.2f}x), CPU {s['cpu_ms']:.1f} -> {r['cpu_ms']:.1f} ms per frame."
            )
    return lines


def table_row(clip: str, config: str, summary: dict[str, Any]) -> dict[str, object]:
    row: dict[str, object] = {
        "clip": clip,
        "config": config,
        "fps": summary["fps"],
        "wall s": summary["seconds"],
        "cpu ms": summary["cpu_ms"],
        "cpu p50": summary["cpu_p50_ms"],
        "cpu p95": summary["cpu_p95_ms"],
        "faces/frame": summary["faces_per_frame"],
        "dropped": summary["source_stats"].get("frames_dropped", 0),
    }
    if "faces_enhanced_per_frame" in summary and summary["faces_per_frame"]:
        row["enhanced/frame"] = summary["faces_enhanced_per_frame"]
        row["refresh/s"] = GOAL_FPS * summary["faces_enhanced_per_frame"] / summary["faces_per_frame"]
    for stage in (*STAGES, "encode"):
        s = summary["stages"].get(stage)
        if s:
            row[f"{stage} p50"] = s["p50_ms"]
            row[f"{stage} p95"] = s["p95_ms"]
    return row


def clips(folder: str, limit: int) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        return []
    # Prefer the clips with the most (and smallest) faces: classroom, walking people, hallway.
    preferred = [
        "facenet_pytorch__video.mp4",
        "intel__one-by-one-person-detection.mp4",
        "intel_preview__classroom.gif",
        "face_recognition__short_hamilton_clip.mp4",
    ]
    found = [root / n for n in preferred if (root / n).exists()]
    found += sorted(p for p in root.iterdir() if p.suffix in (".mp4", ".mkv", ".gif") and p not in found)
    return found[:limit]


def main(args: argparse.Namespace) -> int:
    base = AppConfig(mode="file")
    if args.detect_interval:
        base = replace(base, detect=replace(base.detect, interval=args.detect_interval))
    if args.detect_scan:
        base = replace(base, detect=replace(base.detect, scan=args.detect_scan))
    if args.reuse_below is not None:
        base = replace(base, enhance=replace(base.enhance, reuse_below=args.reuse_below))
    sources = [SourceConfig(uri="demo", name="demo-720p")]
    sources += [SourceConfig(uri=str(p), name=p.name) for p in clips(args.videos, args.max_clips)]
    rows: list[dict[str, object]] = []
    results: list[dict[str, Any]] = []
    for src in sources:
        decode = decode_only(src, args.frames)
        rows.append(
            {
                "clip": src.name,
                "config": "decode only",
                "fps": decode["fps"],
                "wall s": decode["seconds"],
                "cpu ms": decode["cpu_ms"],
                "cpu p50": decode["cpu_p50_ms"],
                "cpu p95": decode["cpu_p95_ms"],
                "source p50": decode["stages"]["source"]["p50_ms"],
            }
        )
        results.append({"clip": src.name, "config": "decode only", **decode})
        engines = args.engines.split(",")
        for engine in engines:
            cfg = replace(
                base,
                enhance=replace(
                    base.enhance if engine == "fsr" else EnhanceConfig(reuse_below=base.enhance.reuse_below),
                    engine=engine,
                ),
            )
            for overlap in args.file_overlap.split(","):
                summary = file_row(
                    validate(replace(cfg, enhance=replace(cfg.enhance, overlap=overlap))), src, args
                )
                label = summary["engine"] + (", overlapped" if summary["overlapped"] else "")
                rows.append(table_row(src.name, label, summary))
                config = engine + (" overlap" if summary["overlapped"] else "")
                results.append({"clip": src.name, "config": config, **summary})
        if src.uri == "demo":
            live_cfg = replace(base, mode="live", enhance=replace(base.enhance, engine=engines[-1]))
            for precision in args.live_precisions.split(","):
                cfg_p = validate(replace(live_cfg, enhance=replace(live_cfg.enhance, precision=precision)))
                for codec in args.live_codecs.split(","):
                    live = live_settings(cfg_p, src, args.frames, codec)
                    label = (
                        f"live: {live['engine']}"
                        + (f", {precision}" if precision != "fp32" else "")
                        + (f" + {codec}" if codec != "none" else "")
                    )
                    rows.append(table_row(src.name, label, live))
                    config = f"live {codec}" + (f" {precision}" if precision != "fp32" else "")
                    results.append({"clip": src.name, "config": config, **live})
    columns = ["clip", "config", "fps", "wall s", "cpu ms", "cpu p50", "cpu p95"]
    columns += ["faces/frame", "enhanced/frame", "refresh/s"]
    columns += ["dropped", "source p50"]
    for stage in (*STAGES, "encode"):
        columns += [f"{stage} p50", f"{stage} p95"]
    load = os.getloadavg()
    print(
        "Pipeline benchmark. cpu ms: process CPU time (user + system, all threads) per output frame, "
        "mean, p50, p95;"
    )
    print(
        "stage columns: wall ms per frame. File rows: detection inline, every face enhanced, "
        f"{'the mp4 encoded' if args.encode else 'no output encoded'}; overlapped: decode, "
        "detect+track+crop, enhance+composite and the consumer each in a thread. live: "
        "background detection, `per_frame` faces enhanced per frame, output encoded with the codec "
        "named; enhanced/frame: faces run through the engine (the others reuse their newest face: "
        "per_frame turn, or unchanged crop); refresh/s: engine runs per face per second at 30 fps."
    )
    print(format_table(rows, columns))
    print(
        f"load average (1/5/15 min) at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    for line in overlap_lines(results):
        print(line)
    for config, label in (("fsr", "file settings"), *((f"live {c}", f"live + {c}") for c in CODECS)):
        demo = [r for r in results if r["clip"] == "demo-720p" and r["config"] == config]
        if demo:
            fps, cpu_ms = float(demo[0]["fps"]), float(demo[0]["cpu_ms"])
            print(
                f"Goal: 720p at {GOAL_FPS:.0f} fps on one core ({GOAL_CPU_MS:.0f} ms CPU per frame). Demo, "
                f"{label}: {cpu_ms:.1f} ms CPU per frame ({GOAL_CPU_MS / cpu_ms:.0%} of the goal), "
                f"{fps:.1f} fps wall, {float(demo[0]['faces_per_frame']):.1f} faces/frame."
            )
    write_json(args.json, results)
    return 0
