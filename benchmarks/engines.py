"""Engine speed: ms per face and faces/s by batch size and backend, in one run.

Rows, all measured in the same process and run (competitors possibly in a sibling interpreter):
  * bicubic, the floor (16 -> 128 px, OpenCV);
  * our two-step FSR (default x8: 16 -> 64 -> 128 px) on every backend this machine can run
    (ONNX Runtime and PyTorch on a CPU; PyTorch CUDA fp16 with CUDA graphs and TensorRT on a GPU),
    and its int8 graphs (`--precision int8`) on ONNX Runtime beside the fp32 ones;
  * GFPGAN (512 px) and Real-ESRGAN x4 (RRDBNet) with random weights (benchmarks/competitors.py).
Each cell is timed over whole `enhance` calls (uint8 BGR in and out, every conversion included),
after two warm-up calls, for at least 3 calls and until a time budget is spent, in wall-clock
and in CPU time of this process (all its threads: what the call costs the machine, which other
processes' load inflates far less than the wall clock). Bicubic and our
rows are interleaved call by call, so load from other processes hits them alike and the ratios
hold on a shared machine. PyTorch CPU rows (whose spinning threads would slow their neighbours)
and the competitor rows run after them, so their ratios are only as steady as the machine's load.

    python run.py bench engines [--quick] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.competitors import COMPETITORS, summarize
from benchmarks.output import write_json
from engines.backends import AUTO_ORDER, BackendUnavailable, unavailable_reason
from engines.base import INPUT_SIZE_FOR_SCALE, Enhancer
from engines.bicubic import BicubicEnhancer
from engines.fsr import GRAPH_PRECISIONS, WEIGHTS_DIR, WeightsNotFound, available_models, load_two_step

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batches", default="1,4,8,32", help="comma-separated batch sizes")
    p.add_argument("--scale", type=int, default=8, choices=sorted(INPUT_SIZE_FOR_SCALE))
    p.add_argument("--variants", default="fast,quality", help="FSR variants to time")
    p.add_argument(
        "--precisions", default="fp32,int8", help="FSR graphs to time (int8: ONNX Runtime rows only)"
    )
    p.add_argument(
        "--backends", default="all", help="'all' usable here, or a comma list of tensorrt,torch,onnxruntime"
    )
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for every CPU row")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls per cell")
    p.add_argument(
        "--competitors",
        default="auto",
        help="auto (in-process if spandrel imports, else .venv-bench), none, or a python interpreter path",
    )
    p.add_argument(
        "--competitor-max-batch",
        default="gfpgan-512=4,realesrgan-x4=8",
        help="on a CPU, skip larger batches of these slow rows (name=N,...)",
    )
    p.add_argument(
        "--exported-graphs",
        action="store_true",
        help="also time ONNX Runtime on the graphs as exported (cubic Resize not rewritten as MatMuls)",
    )
    p.add_argument("--weights", default=str(WEIGHTS_DIR), help="weights folder (default: shipped)")
    p.add_argument(
        "--quick", action="store_true", help="batches 1,4, short budget, fast variant, no competitors"
    )
    p.add_argument("--json", help="write the results here")
    p.add_argument("--plot", help="write a PNG plot of faces/s by batch size here")


def _crops(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(batch).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def time_interleaved(
    enhancers: list[tuple[dict[str, Any], Enhancer]],
    batches: list[int],
    budget_s: float,
    max_rounds: int = 200,
) -> list[dict[str, Any]]:
    """Time every enhancer at every batch size, one call of each (enhancer, batch) cell per
    round, round after round.

    On a shared machine the load changes from second to second; interleaving exposes all cells
    to the same load, so their ratios hold even when the absolute numbers drift. Batch sizes are
    interleaved too: timed one after another, a load that rose during the run made the later
    (larger) batches look dearer per face, bicubic's as much as ours (docs/bench/engines_cpu.json
    before this change: batch 8 cost 1.9x batch 4 per face for bicubic, 2.0x for FSR).
    """
    cells = [(k, batch) for batch in batches for k in range(len(enhancers))]
    calls = []
    for k, batch in cells:
        enh = enhancers[k][1]
        crops, ids = _crops(batch, enh.input_size), list(range(batch))
        calls.append(lambda e=enh, c=crops, i=ids: e.enhance(c, i))
    for call in calls:
        call()
        call()
    times: list[list[float]] = [[] for _ in calls]
    cpu: list[list[float]] = [[] for _ in calls]
    start = time.perf_counter()
    rounds = 0
    while rounds < max_rounds and (rounds < 3 or time.perf_counter() - start < budget_s * len(calls)):
        for j, call in enumerate(calls):
            c0, t0 = time.process_time(), time.perf_counter()
            call()
            times[j].append(time.perf_counter() - t0)
            cpu[j].append(time.process_time() - c0)
        rounds += 1
    rows: list[tuple[int, dict[str, Any]]] = []
    for (k, batch), spent, used in zip(cells, times, cpu, strict=True):
        meta, enh = enhancers[k]
        size = {"input": enh.input_size, "output": enh.output_size}
        row = {**meta, "batch": batch, **size, "rounds_interleaved": rounds, **summarize(spent, batch)}
        rows.append((k, {**row, **cpu_columns(used, batch)}))
    return [row for _, row in sorted(rows, key=lambda kr: kr[0])]  # by enhancer, batches in order


def cpu_columns(cpu_s: list[float], batch: int) -> dict[str, float]:
    """CPU milliseconds per face of the timed calls (process time, every thread), median and p95."""
    stats = summarize(cpu_s, batch)
    return {"cpu_ms_per_face_p50": stats["ms_per_face_p50"], "cpu_ms_per_face_p95": stats["ms_per_face_p95"]}


def fsr_backends(requested: str) -> tuple[list[str], dict[str, str]]:
    """(backends to time, {backend: why not}) for 'all' or an explicit list."""
    names = (
        list(reversed(AUTO_ORDER))
        if requested == "all"
        else [b.strip() for b in requested.split(",") if b.strip()]
    )
    run, skipped = [], {}
    for name in names:
        if name == "torch":  # torch on a CPU is still worth a row, though `auto` would not pick it
            reason = None if _has_torch() else "torch is not installed"
        else:
            reason = unavailable_reason(name)
        if reason is None:
            run.append(name)
        else:
            skipped[name] = reason
    return run, skipped


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _spandrel_importable() -> str | None:
    try:
        import spandrel  # noqa: F401
    except ImportError as exc:
        return f"spandrel not importable here ({exc})"
    return None


def competitor_rows(args: argparse.Namespace, batches: list[int], device: str) -> list[dict[str, Any]]:
    """Rows for GFPGAN and Real-ESRGAN, or one 'skipped' row each saying why."""
    names = list(COMPETITORS)

    def skipped(reason: str) -> list[dict[str, Any]]:
        return [
            {"engine": n, "backend": "-", "device": device, "batch": b, "skipped": reason}
            for n in names
            for b in batches
        ]

    if args.quick and args.competitors == "auto":
        return skipped("--quick")
    if args.competitors == "none":
        return skipped("--competitors none")
    limits = (
        {}
        if device == "cuda"
        else dict(
            (k, int(v)) for k, v in (kv.split("=") for kv in args.competitor_max_batch.split(",") if kv)
        )
    )
    if args.competitors == "auto" and _spandrel_importable() is None:
        from benchmarks.competitors import measure

        return measure(names, device, batches, args.budget, args.threads, limits)
    python = Path(args.competitors) if args.competitors != "auto" else BENCH_PYTHON
    if not python.exists():
        why = _spandrel_importable() or "spandrel missing"
        return skipped(
            f"{why}, and no {python} (python3 -m venv .venv-bench && "
            ".venv-bench/bin/pip install -r requirements-bench.txt)"
        )
    cmd = [
        str(python),
        "-m",
        "benchmarks.competitors",
        "--device",
        device,
        "--batches",
        ",".join(map(str, batches)),
        "--budget",
        str(args.budget),
        "--threads",
        str(args.threads),
        "--max-batch",
        ",".join(f"{k}={v}" for k, v in limits.items()),
    ]
    log.info("competitors: running in %s", python)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        return skipped(f"{python} failed: {last}")
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    for r in rows:
        r["interpreter"] = str(python)
    return rows


def add_ratios(rows: list[dict[str, Any]], reference_engine: str) -> None:
    """ms/face of each row over our fastest backend's for the reference engine, same batch and device."""
    ref: dict[tuple[int, str], float] = {}
    for r in rows:
        if r["engine"] == reference_engine and "skipped" not in r:
            key = (r["batch"], r["device"])
            ref[key] = min(ref.get(key, float("inf")), r["ms_per_face_p50"])
    for r in rows:
        base = ref.get((r["batch"], r["device"])) or ref.get((r["batch"], "cpu"))
        if "skipped" not in r and base:
            r["x_ours"] = r["ms_per_face_p50"] / base


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'engine':<24}{'backend':<24}{'px':>9}{'batch':>6}"
        f"{'ms/face p50':>13}{'p95':>9}{'CPU ms/face p50':>17}{'p95':>9}{'faces/s':>10}{'x ours':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        px = f"{r['input']}>{r['output']}" if "input" in r else "-"
        if "skipped" in r:
            lines.append(
                f"{r['engine']:<24}{r['backend']:<24}{px:>9}{r['batch']:>6}  skipped: {r['skipped']}"
            )
            continue
        nan = float("nan")
        lines.append(
            f"{r['engine']:<24}{r['backend']:<24}{px:>9}{r['batch']:>6}{r['ms_per_face_p50']:>13.2f}"
            f"{r['ms_per_face_p95']:>9.2f}{r.get('cpu_ms_per_face_p50', nan):>17.2f}"
            f"{r.get('cpu_ms_per_face_p95', nan):>9.2f}{r['faces_per_s']:>10.1f}{r.get('x_ours', nan):>8.2f}"
        )
    return "\n".join(lines)


def conditions(args: argparse.Namespace) -> dict[str, Any]:
    info: dict[str, Any] = {
        "machine": platform.node(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "load_avg_start": os.getloadavg(),
        "python": platform.python_version(),
        "budget_s": args.budget,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if _has_torch():
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    return info


def plot(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if "skipped" not in r:
            series.setdefault(f"{r['engine']} / {r['backend']}", []).append((r["batch"], r["faces_per_s"]))
    for label, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (faces per call)")
    ax.set_ylabel("faces per second (median)")
    ax.set_title("Engine speed, same run")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def int8_engine(
    args: argparse.Namespace, variant: str, weights: Path, batches: list[int]
) -> tuple[list[tuple[dict[str, Any], Enhancer]], list[dict[str, Any]]]:
    """The int8 row of one variant (ONNX Runtime: the one backend that runs int8 graphs), or
    'skipped' rows saying why (no int8 files: `run.py train quantize`). It is an engine of its own,
    so its 'x ours' is its cost over the fp32 model's."""
    engine = f"fsr-x{args.scale}-{variant}-int8"
    try:
        enh = load_two_step(
            args.scale, variant, "onnxruntime", threads=args.threads, weights_dir=weights, precision="int8"
        )
    except (WeightsNotFound, BackendUnavailable) as exc:
        skip = {"engine": engine, "backend": "onnxruntime-int8", "device": "cpu", "skipped": str(exc)}
        return [], [{**skip, "batch": b} for b in batches]
    return [({"engine": engine, "backend": enh.name.split("/", 1)[1], "device": "cpu"}, enh)], []


def exported_graph_rows(
    args: argparse.Namespace, variant: str, weights: Path, precisions: list[str]
) -> list[tuple[dict[str, Any], Enhancer]]:
    """The same engines on ONNX Runtime with the graphs as exported (no cubic-Resize rewrite):
    the rewrite's baseline, in the same run."""
    timed: list[tuple[dict[str, Any], Enhancer]] = []
    for precision in precisions:
        enh = load_two_step(
            args.scale,
            variant,
            "onnxruntime",
            threads=args.threads,
            weights_dir=weights,
            precision=precision,
            cpu_rewrites=False,
        )
        suffix = "-int8" if precision == "int8" else ""
        meta = {"engine": f"fsr-x{args.scale}-{variant}{suffix}", "backend": f"onnxruntime{suffix} exported"}
        timed.append(({**meta, "device": "cpu"}, enh))
    return timed


def main(args: argparse.Namespace) -> int:
    batches = [1, 4] if args.quick else [int(b) for b in args.batches.split(",")]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if unknown := sorted(set(precisions) - set(GRAPH_PRECISIONS)):
        raise ValueError(f"--precisions: unknown {', '.join(unknown)}; valid: {', '.join(GRAPH_PRECISIONS)}")
    variants = ["fast"] if args.quick else [v.strip() for v in args.variants.split(",")]
    budget = 0.3 if args.quick else args.budget
    args.budget = budget
    weights = Path(args.weights)
    in_size = INPUT_SIZE_FOR_SCALE[args.scale]
    rows: list[dict[str, Any]] = []
    info = conditions(args)

    timed: list[tuple[dict[str, Any], Enhancer]] = [
        ({"engine": "bicubic", "backend": "opencv", "device": "cpu"}, BicubicEnhancer(in_size, args.scale))
    ]

    backends, skipped = fsr_backends(args.backends)
    have = available_models(weights)
    reference = ""
    device = "cpu"
    for variant in variants:
        engine = f"fsr-x{args.scale}-{variant}"
        if f"x{args.scale}-{variant}" not in have:
            rows += [
                {
                    "engine": engine,
                    "backend": "-",
                    "device": "cpu",
                    "batch": b,
                    "skipped": f"no weights in {weights} (have: {', '.join(have) or 'none'})",
                }
                for b in batches
            ]
            continue
        for backend in backends if "fp32" in precisions else []:
            enh = load_two_step(args.scale, variant, backend, threads=args.threads, weights_dir=weights)
            bname = enh.name.split("/", 1)[1]
            dev = "cuda" if ("cuda" in bname or "tensorrt" in bname) else "cpu"
            device = "cuda" if dev == "cuda" else device
            timed.append(({"engine": engine, "backend": bname, "device": dev}, enh))
            reference = reference or engine
        if "int8" in precisions:
            timed_int8, skipped_int8 = int8_engine(args, variant, weights, batches)
            timed += timed_int8
            rows += skipped_int8
        if args.exported_graphs and "onnxruntime" in backends:
            timed += exported_graph_rows(args, variant, weights, precisions)
        for backend, reason in skipped.items():
            rows += [
                {"engine": engine, "backend": backend, "device": "-", "batch": b, "skipped": reason}
                for b in batches
            ]

    # PyTorch's CPU thread pool keeps spinning after each call and would slow whatever runs next,
    # so its rows are timed on their own, after the interleaved ones.
    spinning = [t for t in timed if t[0]["backend"].startswith("torch-cpu")]
    quiet = [t for t in timed if t not in spinning]
    timed_rows = time_interleaved(quiet, batches, budget)
    for one in spinning:
        timed_rows += [{**r, "rounds_interleaved": 0} for r in time_interleaved([one], batches, budget)]
    rows = timed_rows + rows
    for _, done in timed:
        done.close()
    rows += competitor_rows(args, batches, device)
    if reference:
        add_ratios(rows, reference)
    print(format_rows(rows))
    if reference:
        print(
            f"\n'x ours' = ms/face of the row / ms/face of {reference} at the same batch on the same device "
            "(our fastest backend there); < 1 is faster than ours."
        )
    print("Timings are wall-clock on a machine that may be shared: compare rows of one run, not across runs.")
    result = {
        "conditions": {**info, "load_avg_end": os.getloadavg()},
        "batches": batches,
        "reference": reference,
        "rows": rows,
    }
    write_json(args.json, result)
    if args.json:
        print(f"wrote {args.json}")
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
