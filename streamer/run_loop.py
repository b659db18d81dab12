"""The one outer loop: source -> pipeline -> whoever consumes the results.

The file job, the server's camera thread and both pipeline benchmarks drive a pipeline through
`run_source` (or, for file jobs, its threaded twin `streamer.stage_threads.run_overlapped`, which
reads through the same `read_frames`), so "when does a source end", "what happens to a frame
that fails" and "when do we stop" are answered once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from streamer.sources import FrameSource
from streamer.types import Frame, FrameResult


class Processor(Protocol):
    """What the loop and the server need from a pipeline (streamer.pipeline.Pipeline, or a
    stand-in that wraps one, as the latency benchmark does)."""

    @property
    def backend_name(self) -> str: ...

    @property
    def controls(self) -> dict[str, object]: ...

    def process(self, frame: Frame) -> FrameResult: ...

    def apply(self, changes: dict[str, object]) -> dict[str, object]: ...

    def close(self) -> None: ...


def run_source(
    pipeline: Processor,
    source: FrameSource,
    on_result: Callable[[FrameResult], None],
    stop: threading.Event | None = None,
    *,
    max_frames: int = 0,
    read_timeout: float = 0.5,
    on_error: Callable[[Frame, Exception], None] | None = None,
) -> int:
    """Process frames of a started `source` until it ends, `max_frames` were processed (0: no
    limit) or `stop` is set; return how many were processed.

    A frame whose processing raises goes to `on_error` and the loop goes on (a camera must
    survive one bad frame); without `on_error` the exception propagates (a file job should fail
    loudly).
    """
    frames = 0
    for frame in read_frames(source, lambda: stop is not None and stop.is_set(), read_timeout):
        try:
            result = pipeline.process(frame)
        except Exception as exc:
            if on_error is None:
                raise
            on_error(frame, exc)
            continue
        on_result(result)
        frames += 1
        if max_frames and frames >= max_frames:
            break
    return frames


def read_frames(source: FrameSource, stopped: Callable[[], bool], read_timeout: float) -> Iterator[Frame]:
    """The frames of a started `source` until it ends or `stopped()` says so (asked before every
    read). `read()` returning None means "nothing yet" for a live source (it keeps reconnecting
    on its own) and the end only once the source says `ended`."""
    while not stopped():
        frame = source.read(timeout=read_timeout)
        if frame is None:
            if source.ended:
                return
            continue
        yield frame
