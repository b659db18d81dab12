"""Per-stage timing: every stage records its seconds per frame; summaries give p50/p95.

Kept in a bounded window so a server running for days reports recent behaviour and uses
constant memory.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class StageStats:
    def __init__(self, window: int = 3000) -> None:
        self._window = window
        self._samples: dict[str, deque[float]] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(self, stage: str, seconds: float) -> None:
        with self._lock:
            if stage not in self._samples:
                self._samples[stage] = deque(maxlen=self._window)
                self._counts[stage] = 0
            self._samples[stage].append(seconds)
            self._counts[stage] += 1

    @contextmanager
    def time(self, stage: str, into: dict[str, float] | None = None) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.record(stage, dt)
            if into is not None:
                into[stage] = into.get(stage, 0.0) + dt

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {p50_ms, p95_ms, mean_ms, count}} over the recent window."""
        with self._lock:
            items = [(k, np.asarray(v, dtype=np.float64), self._counts[k]) for k, v in self._samples.items()]
        out: dict[str, dict[str, float]] = {}
        for stage, arr, count in items:
            if arr.size == 0:
                continue
            out[stage] = {
                "p50_ms": float(np.percentile(arr, 50) * 1e3),
                "p95_ms": float(np.percentile(arr, 95) * 1e3),
                "mean_ms": float(arr.mean() * 1e3),
                "count": float(count),
            }
        return out


class FrameCpu:
    """Process CPU time (user + system, every thread) between consecutive output frames.

    Wall-clock fps on a shared machine mostly measures the neighbours; the CPU a camera costs
    per frame does not, and it counts the work of background threads (detection, encoders) that
    per-stage timings on the frame path miss. The first `tick` only starts the clock, so model
    loading and warm-up before the first frame are not counted.
    """

    def __init__(self) -> None:
        self._last: float | None = None
        self.samples: list[float] = []

    def tick(self) -> None:
        now = time.process_time()
        if self._last is not None:
            self.samples.append(now - self._last)
        self._last = now

    def on_result(self, _result: object) -> None:
        """`tick`, as a per-result callback (streamer.enhance_job.run_enhance's `on_result`)."""
        self.tick()

    def summary(self) -> dict[str, float]:
        """{cpu_ms (mean per frame), cpu_p50_ms, cpu_p95_ms, cpu_frames}; NaN before two ticks."""
        arr = np.asarray(self.samples, dtype=np.float64) * 1e3
        if arr.size == 0:
            nan = float("nan")
            return {"cpu_ms": nan, "cpu_p50_ms": nan, "cpu_p95_ms": nan, "cpu_frames": 0.0}
        return {
            "cpu_ms": float(arr.mean()),
            "cpu_p50_ms": float(np.percentile(arr, 50)),
            "cpu_p95_ms": float(np.percentile(arr, 95)),
            "cpu_frames": float(arr.size),
        }


def format_table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """A plain aligned text table; numbers get sensible precision."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return str(v)

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)
    ]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
