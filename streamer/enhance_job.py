"""The file job: read a source to its end, enhance every frame, write an mp4, report timings.

Frames are never dropped here (a file is read as fast as the pipeline goes), so the output has
the source's frame count and timing. The summary is what an engineer benchmarking latency wants:
fps, p50/p95 per stage, faces per frame, and everything the source had to skip.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamer.config import AppConfig, SourceConfig
from streamer.pipeline import STAGES, Pipeline
from streamer.run_loop import run_source
from streamer.sink import Mp4Sink
from streamer.sources import open_source
from streamer.stage_threads import run_overlapped
from streamer.stats import format_table
from streamer.types import FrameResult

log = logging.getLogger(__name__)


def run_enhance(
    cfg: AppConfig,
    source_cfg: SourceConfig,
    out_path: str | Path | None,
    max_frames: int = 0,
    pipeline: Pipeline | None = None,
    on_result: Callable[[FrameResult], None] | None = None,
) -> dict[str, Any]:
    """Process `source_cfg` through the pipeline; write `out_path` (mp4) when given. The mode
    (file or live) is the config's, decided where the config was built; the stages run
    overlapped in threads unless `enhance.overlap` says otherwise (streamer.stage_threads).
    `on_result` sees every result after it was written, in the thread that writes (the
    benchmarks measure CPU per frame there)."""
    source = open_source(source_cfg, live=cfg.live)
    source.start()
    pipe = pipeline or Pipeline(cfg, source_cfg.display_name)
    audio = source_cfg.uri if (cfg.output.audio == "copy" and Path(source_cfg.uri).is_file()) else None
    sink = Mp4Sink(out_path, fps=source.fps, crf=cfg.output.crf, audio_from=audio) if out_path else None
    faces = 0

    def write(result: FrameResult) -> None:
        nonlocal faces
        faces += len(result.faces)
        if sink is not None:
            with pipe.stats.time("encode"):
                sink.write(result.output, result.frame.pts)
        if on_result is not None:
            on_result(result)

    read_timeout = source_cfg.open_timeout_s + 5.0
    t0 = time.perf_counter()
    try:
        if overlapped(cfg):
            frames = run_overlapped(
                source, pipe.front, pipe.back, write, max_frames=max_frames, read_timeout=read_timeout
            )
        else:
            frames = run_source(pipe, source, write, max_frames=max_frames, read_timeout=read_timeout)
    finally:
        source.stop()
        if sink is not None:
            sink.close()
    wall = time.perf_counter() - t0
    summary = {
        "source": source_cfg.uri,
        "output": str(out_path) if out_path else None,
        "frames": frames,
        "seconds": wall,
        "fps": frames / wall if wall > 0 else 0.0,
        "faces_per_frame": faces / frames if frames else 0.0,
        "faces_enhanced_per_frame": pipe.faces_enhanced / frames if frames else 0.0,
        "faces_reused_per_frame": pipe.faces_reused / frames if frames else 0.0,
        "engine": pipe.backend_name,
        "overlapped": overlapped(cfg),
        "source_stats": asdict(source.stats),
        "stages": pipe.stats.summary(),
    }
    if pipeline is None:
        pipe.close()
    return summary


def overlapped(cfg: AppConfig) -> bool:
    """Whether the job runs its stages in threads (`enhance.overlap`). By default not for a stream
    read live: there the source already drops frames the job is too slow for and detection has
    its own thread, and the overlap was measured on file jobs only (benchmarks/pipeline.py)."""
    return cfg.enhance.overlap == "on" or (cfg.enhance.overlap == "auto" and not cfg.live)


def summary_table(summary: dict[str, Any]) -> str:
    stages = summary["stages"]
    rows: list[dict[str, object]] = []
    for name in (*STAGES, "encode"):
        if name in stages:
            s = stages[name]
            rows.append(
                {"stage": name, "p50 ms": s["p50_ms"], "p95 ms": s["p95_ms"], "mean ms": s["mean_ms"]}
            )
    total_p50 = sum(float(str(r["p50 ms"])) for r in rows)
    rows.append({"stage": "sum of p50", "p50 ms": total_p50, "p95 ms": "", "mean ms": ""})
    src = summary["source_stats"]
    head = (
        f"{summary['source']}: {summary['frames']} frames in {summary['seconds']:.1f} s "
        f"= {summary['fps']:.1f} fps, "
        f"{summary['faces_per_frame']:.2f} faces/frame, engine {summary['engine']}"
        f"{', stages overlapped' if summary['overlapped'] else ''}\n"
        f"source: dropped {src.get('frames_dropped', 0)}, corrupt packets {src.get('corrupt_packets', 0)}, "
        f"reconnects {src.get('reconnects', 0)}"
    )
    return head + "\n" + format_table(rows, ["stage", "p50 ms", "p95 ms", "mean ms"])


def write_json(summary: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(summary, indent=2))
