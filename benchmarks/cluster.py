"""Cameras on a Ray cluster: one engine replica batching face crops across cameras, against an
engine in each camera's actor, side by side in one run.

For each mode and camera count N, N demo cameras run as camera actors (streamer/cluster/), each
with its enhanced track encoded (VP8) for a poller standing in for the head, on one local Ray
instance. After `--warmup` s, over the measured window:
    faces/s      faces run through the engine per second, all cameras together
    cam fps      frames each camera published per second (min and median over cameras)
    batch        batched mode: camera frames per engine call (mean, max) and faces per call (mean)
A camera never waits for the engine (streamer/cluster/overlap.py), so a slow engine shows as
fewer faces/s, not fewer frames.

    python run.py bench cluster [--cameras 1,2,4] [--seconds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import Any

import numpy as np

from benchmarks.output import write_json
from streamer.config import AppConfig, ClusterConfig, DetectConfig, EnhanceConfig, ServerConfig, SourceConfig
from streamer.stats import format_table

MODES = ("batched", "per-camera")
READY_TIMEOUT_S = 180.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cameras", default="1,2,4", help="camera counts, comma-separated")
    p.add_argument("--modes", default=",".join(MODES), help=f"which of {list(MODES)}, comma-separated")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per case")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds after every camera is ready")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=float, default=15.0, help="demo source frame rate")
    p.add_argument("--engine", choices=["bicubic", "fsr"], default="fsr")
    p.add_argument(
        "--per-frame", type=int, default=0, help="faces sent to the engine per camera frame (0: all in view)"
    )
    p.add_argument("--max-batch", type=int, default=8, help="camera frames per engine call at most")
    p.add_argument("--batch-wait-ms", type=float, default=10.0)
    p.add_argument("--ray", default="auto", help="auto (a local Ray instance) or a cluster's host:port")
    p.add_argument("--json", help="write all results here")


def config(args: argparse.Namespace, n: int, per_camera: bool) -> AppConfig:
    sources = tuple(
        SourceConfig(
            uri="demo",
            name=f"cam{i}",
            demo_width=args.width,
            demo_height=args.height,
            demo_fps=args.fps,
            demo_seed=i,
        )
        for i in range(n)
    )
    return AppConfig(
        sources=sources,
        detect=DetectConfig(input_width=args.width),
        enhance=EnhanceConfig(engine=args.engine, per_frame=args.per_frame),
        server=ServerConfig(port=0),
        cluster=ClusterConfig(
            ray=args.ray,
            max_batch=args.max_batch,
            batch_wait_ms=args.batch_wait_ms,
            engine_per_camera=per_camera,
        ),
    )


async def drain(actor: Any, stop: asyncio.Event) -> None:
    """Poll the enhanced track's packets, as the head would for a viewer (it keeps the encoder on)."""
    epoch, after = "", 0
    while not stop.is_set():
        epoch, packets = await actor.poll.remote(("enhanced", "vp8", "full"), epoch, after, "", 1.0)
        if packets:
            after = packets[-1][0]


async def snapshot(actors: list[Any]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(a.state.remote("", 0, 0, 0, 0.0) for a in actors)))


async def run_case(args: argparse.Namespace, mode: str, n: int, engine: Any) -> dict[str, Any]:
    import ray

    from streamer.cluster.camera_actor import EngineRoute
    from streamer.cluster.connect import APP, DEPLOYMENT
    from streamer.cluster.head import place_camera

    per_camera = mode == "per-camera"
    cfg = config(args, n, per_camera)
    route = EngineRoute() if per_camera else EngineRoute(APP, DEPLOYMENT)
    actors = [place_camera(cfg, s, route) for s in cfg.sources]
    stop = asyncio.Event()
    try:
        errors = await asyncio.wait_for(
            asyncio.gather(*(a.ready.remote(READY_TIMEOUT_S) for a in actors)), READY_TIMEOUT_S
        )
        if any(errors):
            raise SystemExit(f"run.py bench cluster: a camera could not start: {errors}")
        drains = [asyncio.ensure_future(drain(a, stop)) for a in actors]
        await asyncio.sleep(args.warmup)
        if engine is not None:
            await engine.reset_stats.remote()
        before, t0 = await snapshot(actors), time.monotonic()
        await asyncio.sleep(args.seconds)
        after, t1 = await snapshot(actors), time.monotonic()
        batches = await engine.batch_stats.remote() if engine is not None and not per_camera else None
        stop.set()
        await asyncio.gather(*drains, return_exceptions=True)
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
    span = t1 - t0
    fps = [(b1["seq"] - b0["seq"]) / span for b0, b1 in zip(before, after, strict=True)]
    faces = sum(
        b1.get("faces_enhanced", 0) - b0.get("faces_enhanced", 0)
        for b0, b1 in zip(before, after, strict=True)
    )
    row: dict[str, Any] = {
        "mode": mode,
        "cameras": n,
        "faces/s": faces / span,
        "cam fps min": min(fps),
        "cam fps med": float(np.median(fps)),
        "fps": fps,
    }
    if batches is not None:
        requests = {int(k): v for k, v in batches["requests"].items()}
        calls = sum(requests.values())
        row["batch mean"] = sum(k * v for k, v in requests.items()) / calls if calls else 0.0
        row["batch max"] = max(requests, default=0)
        faces_per = {int(k): v for k, v in batches["faces"].items()}
        row["faces/call"] = sum(k * v for k, v in faces_per.items()) / calls if calls else 0.0
        row["batch sizes"] = dict(sorted(requests.items()))
    return row


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    from ray import serve

    from streamer.cluster.connect import APP, DEPLOYMENT, connect, deploy_engine

    counts = [int(v) for v in args.cameras.split(",") if v.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(modes) - set(MODES) or not counts or min(counts) < 1:
        raise SystemExit(f"run.py bench cluster: --modes from {list(MODES)}, --cameras positive integers")
    base = config(args, max(counts), False)
    connect(base.cluster, max(counts))
    engine = None
    if "batched" in modes:
        deploy_engine(base)
        engine = serve.get_deployment_handle(DEPLOYMENT, app_name=APP)
    results: dict[str, Any] = {
        "conditions": {
            "source": f"demo {args.width}x{args.height} @ {args.fps:g} fps",
            "engine": args.engine,
            "per_frame": args.per_frame,
            "replicas": 1,
            "max_batch": args.max_batch,
            "batch_wait_ms": args.batch_wait_ms,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "ray": args.ray,
        },
        "rows": [],
    }
    for mode in modes:
        for n in counts:
            print(f"cluster: {mode}, {n} camera(s), {args.seconds:g} s ...", flush=True)
            results["rows"].append(await run_case(args, mode, n, engine))
    return results


COLUMNS = [
    "mode",
    "cameras",
    "faces/s",
    "cam fps min",
    "cam fps med",
    "batch mean",
    "batch max",
    "faces/call",
]


def report(results: dict[str, Any]) -> str:
    c = results["conditions"]
    head = (
        f"Cameras on Ray ({c['source']} each, engine {c['engine']}, Ray {c['ray']}); batched: one "
        f"replica, up to {c['max_batch']} camera frames per call, {c['batch_wait_ms']:g} ms wait; "
        "per-camera: an engine in each camera's actor"
    )
    sizes = [
        f"  {r['cameras']} camera(s): frames per call {r['batch sizes']}"
        for r in results["rows"]
        if "batch sizes" in r
    ]
    return "\n".join([head, "", format_table(results["rows"], COLUMNS), "", "batch sizes formed:", *sizes])


def main(args: argparse.Namespace) -> int:
    logging.getLogger("ray").setLevel(logging.WARNING)
    results = asyncio.run(run_all(args))
    print(report(results))
    write_json(args.json, results)
    return 0
