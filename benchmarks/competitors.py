"""Speed of the architectures users would otherwise reach for, with random weights.

GFPGAN v1 "clean" (StyleGAN2 decoder, works on a 512 px face) and Real-ESRGAN x4 (RRDBNet, 23
blocks; 32 -> 128 px here, the same output size as ours), both built from `spandrel`, a
maintained package of these architectures. Speed does not depend on the weights, and no weights
can be downloaded here anyway.

spandrel imports torchvision, which must match torch exactly, so this module may run in another
interpreter (the `.venv-bench` of requirements-bench.txt) as `python -m benchmarks.competitors`,
printing its rows as JSON; it imports nothing else from this project for that reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

COMPETITORS: dict[str, dict[str, Any]] = {
    "gfpgan-512": {"input": 512, "output": 512, "what": "GFPGANv1Clean (StyleGAN2), 512 px in and out"},
    "realesrgan-x4": {"input": 32, "output": 128, "what": "Real-ESRGAN x4 RRDBNet (23 blocks), 32 -> 128 px"},
}


def build(name: str) -> Any:
    if name == "gfpgan-512":
        from spandrel.architectures.GFPGAN import GFPGAN

        return GFPGAN(out_size=512)
    if name == "realesrgan-x4":
        from spandrel.architectures.ESRGAN import ESRGAN

        return ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)
    raise ValueError(f"unknown competitor {name!r}; valid: {', '.join(COMPETITORS)}")


def time_calls(
    call: Any, batch: int, budget_s: float, min_repeats: int = 3, max_repeats: int = 50
) -> list[float]:
    """Seconds per call: two warm-up calls, then repeats until the time budget is spent."""
    for _ in range(2):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return times


def summarize(times: list[float], batch: int) -> dict[str, float]:
    per_face = np.asarray(times) * 1e3 / batch
    return {
        "ms_per_face_p50": float(np.median(per_face)),
        "ms_per_face_p95": float(np.percentile(per_face, 95)),
        "faces_per_s": float(batch / np.median(times)),
        "repeats": len(times),
    }


def _forward_call(net: Any, x_host: Any, device: str, half: bool) -> Callable[[], None]:
    """One timed call: host batch in, uint8 images back on the host, as our `enhance` does."""
    import torch

    def call() -> None:
        with torch.inference_mode():
            x = x_host.to(device, non_blocking=True)
            y = net(x.half() if half else x)
            y = y[0] if isinstance(y, tuple) else y
            (y.float().clamp(0, 1) * 255).to(torch.uint8).cpu()

    return call


def measure(
    names: list[str],
    device: str,
    batches: list[int],
    budget_s: float,
    threads: int,
    max_batch: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """One row per (competitor, batch); rows that cannot run say why in `skipped`."""
    import torch

    torch.manual_seed(0)
    if device == "cpu":
        torch.set_num_threads(threads)
    half = device == "cuda"
    rows: list[dict[str, Any]] = []
    for name in names:
        info = COMPETITORS[name]
        net = build(name).eval().to(device)
        if half:
            net = net.half()
        params = sum(p.numel() for p in net.parameters()) / 1e6
        for batch in batches:
            row: dict[str, Any] = {
                "engine": name,
                "backend": f"torch-{device}{'-fp16' if half else ''}",
                "device": device,
                "batch": batch,
                "input": info["input"],
                "output": info["output"],
                "params_m": round(params, 2),
                "what": info["what"],
            }
            if max_batch and batch > max_batch.get(name, batch):
                row["skipped"] = f"batch {batch} over this run's limit for {name} on {device} (too slow)"
                rows.append(row)
                continue
            x_host = torch.rand(batch, 3, info["input"], info["input"])
            call = _forward_call(net, x_host, device, half)
            row.update(summarize(time_calls(call, batch, budget_s), batch))
            rows.append(row)
            print(f"competitors: {name} batch {batch}: {row['ms_per_face_p50']:.1f} ms/face", file=sys.stderr)
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="competitor rows of `run.py bench engines`, as JSON on stdout")
    p.add_argument("--names", default=",".join(COMPETITORS))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batches", default="1,4,8,32")
    p.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per row")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-batch", default="", help="name=N,... skip larger batches for slow rows")
    a = p.parse_args(argv)
    limits = {k: int(v) for k, v in (kv.split("=") for kv in a.max_batch.split(",") if kv)}
    rows = measure(
        a.names.split(","), a.device, [int(b) for b in a.batches.split(",")], a.budget, a.threads, limits
    )
    json.dump(rows, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
