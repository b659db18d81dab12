"""What every frame source shares: the error type, counters, the protocol and the hand-off queues.

A source owns its decode thread; the pipeline only calls `read()`. Live sources hand frames over
through `FrameQueue` (newest wins, so a slow consumer sees fresh frames instead of a growing
backlog); files use a plain blocking queue so no frame is ever lost.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from streamer.types import Frame


class SourceError(RuntimeError):
    """A source cannot be opened: the message is one line saying which source and why."""


@dataclass
class SourceStats:
    """Counters a source keeps while it runs (read by the dashboard and the summary table).

    frames_read: frames decoded or rendered. frames_dropped: frames thrown away because the
    consumer was slower than a live source (newest wins). corrupt_packets: packets that failed to
    demux or decode, or that the demuxer/decoder flagged as corrupt. reconnects: successful
    re-opens of a live source after it was lost. resolution_changes: times the decoded size
    changed. oversized_frames: frames above `max_pixels` that were downscaled. frames_lost: frames
    missing from the stream itself, inferred from gaps in its timestamps (corruption, packet loss).
    """

    frames_read: int = 0
    frames_dropped: int = 0
    corrupt_packets: int = 0
    reconnects: int = 0
    resolution_changes: int = 0
    oversized_frames: int = 0
    frames_lost: int = 0


@dataclass(frozen=True)
class SourceStatus:
    """Where a source stands, replaced whole on every change so other threads read it consistently.

    state: idle (not started), connecting (never live yet), live, reconnecting (was live, lost),
    ended (a finite source delivered its last frame, or gave up), stopped. attempt: failures (the
    stream lost, each open that failed) since it was last live, or since start. last_error: why
    the latest open or read failed, None once live again. since: time.monotonic() of the latest
    change.
    """

    state: str = "idle"
    attempt: int = 0
    last_error: str | None = None
    since: float = field(default_factory=time.monotonic)


@runtime_checkable
class FrameSource(Protocol):
    name: str
    fps: float
    is_live: bool
    stats: SourceStats
    ended: bool
    status: SourceStatus

    def start(self) -> None: ...

    def read(self, timeout: float | None = None) -> Frame | None: ...

    def stop(self) -> None: ...

    def __iter__(self) -> Iterator[Frame]: ...


class BaseSource:
    """Iteration and context-manager plumbing shared by the concrete sources.

    `ended` turns True once a finite source has delivered its last frame, which is how a caller
    tells "end of file" from "no frame within the timeout" when `read()` returns None. `status`
    (see SourceStatus) is for health checks, dashboards and logs.
    """

    name: str
    fps: float
    is_live: bool
    stats: SourceStats
    ended: bool
    status: SourceStatus = SourceStatus()

    @property
    def state(self) -> str:
        return self.status.state

    def _set_state(self, state: str, error: str | None = None) -> None:
        """`error` with a state other than live counts one more failed attempt."""
        attempt = 0 if state == "live" else self.status.attempt + (error is not None)
        last_error = None if state == "live" else (error or self.status.last_error)
        self.status = SourceStatus(state, attempt, last_error)

    def start(self) -> None:
        raise NotImplementedError

    def read(self, timeout: float | None = None) -> Frame | None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        try:
            while True:
                frame = self.read()
                if frame is None:
                    return
                yield frame
        finally:
            self.stop()

    def __enter__(self) -> BaseSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FrameQueue:
    """A bounded hand-off between a source's thread and the pipeline.

    With `newest_wins` (live sources) `put` never blocks: it evicts the oldest frames and reports
    how many, so a slow consumer always gets the freshest picture. Without it (files) `put`
    blocks while the queue is full, so no frame is lost. `close()` releases every waiter: `get`
    then drains what is left and returns None, `put` drops its frame.
    """

    def __init__(self, maxsize: int, newest_wins: bool) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self._items: deque[Frame] = deque()
        self._maxsize = maxsize
        self._newest_wins = newest_wins
        self._cond = threading.Condition()
        self.closed = False

    def put(self, item: Frame) -> int:
        """Add `item`; return how many older frames were evicted to make room."""
        with self._cond:
            evicted = 0
            if self._newest_wins:
                while len(self._items) >= self._maxsize:
                    self._items.popleft()
                    evicted += 1
            else:
                while len(self._items) >= self._maxsize and not self.closed:
                    self._cond.wait()
            if self.closed:
                return evicted
            self._items.append(item)
            self._cond.notify_all()
            return evicted

    def get(self, timeout: float | None = None) -> Frame | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items and not self.closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
