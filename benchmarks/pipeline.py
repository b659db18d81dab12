"""Pipeline benchmark: the whole CPU pipeline on the demo source and on real videos.

For each clip it runs, in the same process and run: a decode-only baseline (what the source costs
alone), the pipeline with the bicubic engine (the floor), and the pipeline with the configured FSR
engine. It prints fps, p50/p95 per stage, faces per frame and frames dropped, and says how far
the demo (720p, 4+ faces) is from the product goal of 30 fps on this machine.

    python run.py bench pipeline [--videos DIR] [--frames N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from streamer.config import AppConfig, EnhanceConfig, SourceConfig
from streamer.enhance_job import run_enhance
from streamer.pipeline import STAGES, Pipeline
from streamer.run_loop import run_source
from streamer.sources import open_source
from streamer.stats import format_table
from streamer.types import FrameResult

SHARED_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
GOAL_FPS = 30.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", default=str(SHARED_VIDEOS), help="folder of real clips (skipped when absent)")
    p.add_argument("--frames", type=int, default=90, help="frames per clip and configuration")
    p.add_argument("--max-clips", type=int, default=4, help="how many real clips to include")
    p.add_argument("--engines", default="bicubic,fsr", help="comma-separated engines to compare")
    p.add_argument("--detect-interval", type=int, default=None)
    p.add_argument("--json", help="write all results here")


def decode_only(source: SourceConfig, frames: int) -> dict[str, Any]:
    src = open_source(source)
    src.start()
    times: list[float] = []
    n = 0
    t0 = time.perf_counter()
    try:
        while n < frames:
            t = time.perf_counter()
            f = src.read(timeout=10.0)
            if f is None:
                break
            times.append(time.perf_counter() - t)
            n += 1
    finally:
        src.stop()
    wall = time.perf_counter() - t0
    arr = np.asarray(times) * 1e3 if times else np.zeros(1)
    return {
        "frames": n,
        "fps": n / wall if wall else 0.0,
        "stages": {
            "source": {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95))}
        },
    }


def live_settings(cfg: AppConfig, source: SourceConfig, frames: int) -> dict[str, Any]:
    """The pipeline as `serve` runs it (background detection, `per_frame` engine budget), fed as
    fast as it takes frames, so its fps is the most a live camera could get through."""
    pipe = Pipeline(cfg, source.display_name)
    src = open_source(source)
    src.start()
    faces = 0

    def count(result: FrameResult) -> None:
        nonlocal faces
        faces += len(result.faces)

    t0 = time.perf_counter()
    try:
        n = run_source(pipe, src, count, max_frames=frames, read_timeout=10.0)
    finally:
        src.stop()
        pipe.close()
    wall = time.perf_counter() - t0
    return {
        "frames": n,
        "fps": n / wall if wall else 0.0,
        "faces_per_frame": faces / max(n, 1),
        "faces_enhanced_per_frame": pipe.faces_enhanced / max(n, 1),
        "engine": pipe.backend_name,
        "stages": pipe.stats.summary(),
        "source_stats": {},
    }


def table_row(clip: str, config: str, summary: dict[str, Any]) -> dict[str, object]:
    row: dict[str, object] = {
        "clip": clip,
        "config": config,
        "fps": summary["fps"],
        "faces/frame": summary["faces_per_frame"],
        "dropped": summary["source_stats"].get("frames_dropped", 0),
    }
    for stage in STAGES:
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
                "source p50": decode["stages"]["source"]["p50_ms"],
            }
        )
        results.append({"clip": src.name, "config": "decode only", **decode})
        for engine in args.engines.split(","):
            cfg = replace(
                base, enhance=replace(base.enhance if engine == "fsr" else EnhanceConfig(), engine=engine)
            )
            summary = run_enhance(cfg, src, out_path=None, max_frames=args.frames)
            rows.append(table_row(src.name, summary["engine"], summary))
            results.append({"clip": src.name, "config": engine, **summary})
        if src.uri == "demo":
            live = live_settings(replace(base, mode="live"), src, args.frames)
            rows.append(table_row(src.name, f"live: {live['engine']}", live))
            results.append({"clip": src.name, "config": "live", **live})
    columns = ["clip", "config", "fps", "faces/frame", "dropped", "source p50"]
    for stage in STAGES:
        columns += [f"{stage} p50", f"{stage} p95"]
    print("Pipeline benchmark (ms per frame; fps = whole pipeline, no encode). File rows: detection")
    print(
        "inline every 3rd frame, every face enhanced. live: background detection, 4 faces enhanced per frame."
    )
    print(format_table(rows, columns))
    for config, label in (("fsr", "file settings"), ("live", "live settings")):
        demo = [r for r in results if r["clip"] == "demo-720p" and r["config"] == config]
        if demo:
            fps = float(demo[0]["fps"])
            print(
                f"Goal: 720p at {GOAL_FPS:.0f} fps with 4 faces. Demo with FSR, {label}: {fps:.1f} fps "
                f"({fps / GOAL_FPS:.0%} of the goal), {float(demo[0]['faces_per_frame']):.1f} faces/frame."
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0
