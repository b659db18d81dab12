"""A file job's stages overlapped across threads: while frame N is encoded, N+1 is enhanced, N+2
detected and N+3 decoded, so a frame costs the slowest stage's time instead of the sum.

Four threads: a reader (the source's `read`, which renders the demo camera itself and takes a
file's frames from its decode thread), the pipeline's front half (detect, track, choose, crop),
its back half (enhance, composite, label), and the caller's own thread, which consumes the
results (the mp4 encode). ONNX Runtime, OpenCV and PyAV release the GIL in their calls, so the
stages really run at once. One thread per stage and first-in-first-out queues keep the frame
order; the queues are small and block when full, so a slow stage holds the others back and no
frame is dropped. Only frames and results go through the queues: what a half needs from the
other travels with the frame (streamer.pipeline.Staged).

An exception in any thread ends the job: every thread stops working and only drains its input,
so none stays blocked on a full queue; all are joined, and the first exception is raised in the
caller, as `run_source` without `on_error` would raise it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

from streamer.run_loop import read_frames
from streamer.sources import FrameSource
from streamer.types import Frame, FrameResult

In = TypeVar("In")
Out = TypeVar("Out")
S = TypeVar("S")

DEPTH = 2
"""Items waiting between two stages: rides out a slow frame (a full-frame detector pass) without
holding many decoded frames in memory."""


class _Failure:
    """The first exception of any stage; setting it tells every thread to stop working."""

    def __init__(self) -> None:
        self.first: BaseException | None = None
        self.event = threading.Event()
        self._lock = threading.Lock()

    def set(self, exc: BaseException) -> None:
        with self._lock:
            if self.first is None:
                self.first = exc
        self.event.set()


def run_overlapped(
    source: FrameSource,
    front: Callable[[Frame], S],
    back: Callable[[S], FrameResult],
    on_result: Callable[[FrameResult], None],
    *,
    max_frames: int = 0,
    read_timeout: float = 0.5,
    depth: int = DEPTH,
) -> int:
    """Run frames of a started `source` through `front`, then `back`, then `on_result` (in the
    calling thread), each stage in its own thread, until the source ends or `max_frames` were
    read (0: no limit); return how many results `on_result` took."""
    failure = _Failure()
    frames: queue.Queue[Frame | None] = queue.Queue(depth)
    staged: queue.Queue[S | None] = queue.Queue(depth)
    results: queue.Queue[FrameResult | None] = queue.Queue(depth)

    def read() -> None:
        try:
            for n, frame in enumerate(read_frames(source, failure.event.is_set, read_timeout), 1):
                frames.put(frame)
                if n == max_frames:
                    break
        except BaseException as exc:
            failure.set(exc)
        finally:
            frames.put(None)

    threads = [
        threading.Thread(target=read, name="stage-read", daemon=True),
        threading.Thread(
            target=_relay, args=(front, frames, staged, failure), name="stage-front", daemon=True
        ),
        threading.Thread(
            target=_relay, args=(back, staged, results, failure), name="stage-back", daemon=True
        ),
    ]
    for t in threads:
        t.start()
    done = 0
    try:
        while (result := results.get()) is not None:
            if not failure.event.is_set():
                on_result(result)
                done += 1
    except BaseException as exc:  # on_result failed, or Ctrl-C while waiting
        failure.set(exc)
        while results.get() is not None:
            pass
    finally:
        for t in threads:
            t.join()
    if failure.first is not None:
        raise failure.first
    return done


def _relay(
    work: Callable[[In], Out],
    inbox: queue.Queue[In | None],
    outbox: queue.Queue[Out | None],
    failure: _Failure,
) -> None:
    """One stage: `work` on each item in order until the end of its input (None), which it then
    passes on. After a failure anywhere it only drains its input."""
    try:
        while (item := inbox.get()) is not None:
            if failure.event.is_set():
                continue
            try:
                outbox.put(work(item))
            except BaseException as exc:
                failure.set(exc)
    finally:
        outbox.put(None)
