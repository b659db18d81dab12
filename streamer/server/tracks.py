"""The two video tracks of a camera (original and enhanced), fanned out to every viewer.

Each camera has exactly one source track per kind; viewers get `MediaRelay.subscribe(...,
buffered=False)` proxies of it. The relay reads the source track once per published result and
hands every proxy only the newest frame, so the pipeline runs once per frame whatever the
number of viewers, and a viewer whose encoder falls behind skips frames instead of queueing
them or holding the others back.
"""

from __future__ import annotations

import fractions
import time

from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from streamer.server.camera import CameraRunner
from streamer.server.latency import INDEX_MASK, LatencyLog

KINDS = ("enhanced", "original")
CLOCK_RATE = 90_000
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)


class CameraVideoTrack(MediaStreamTrack):
    """Serves the newest published frame of one kind; waits for the next one, never repeats."""

    kind = "video"

    def __init__(self, camera: CameraRunner, which: str, latency_log: LatencyLog | None = None) -> None:
        super().__init__()
        if which not in KINDS:
            raise ValueError(f"track kind must be one of {KINDS}, got {which!r}")
        self.camera = camera
        self.which = which
        self.latency_log = latency_log
        self._seq = 0
        self._t0: float | None = None

    async def recv(self):  # type: ignore[no-untyped-def]  # aiortc's own signature
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            published = await self.camera.wait_newer(self._seq, timeout=1.0)
            if published is None:
                if not self.camera.alive and self.camera.latest is not None:
                    self.stop()
                    raise MediaStreamError
                continue
            self._seq = published.seq
            frame = published.original if self.which == "original" else published.enhanced
            if frame is None:  # published before the first viewer arrived
                continue
            if self._t0 is None:
                self._t0 = published.published_at
            # Real capture-clock timing (not a fixed 30 fps clock): the receiver's jitter buffer
            # then sees the pipeline's true cadence.
            frame.pts = int((published.published_at - self._t0) * CLOCK_RATE)
            frame.time_base = TIME_BASE
            if self.latency_log is not None:
                self.latency_log.mark(
                    published.result.frame.index & INDEX_MASK,
                    {f"sent_{self.which}": time.monotonic()},
                    first_only=True,
                )
            return frame


class CameraTracks:
    """A camera's source tracks and the relay that fans them out."""

    def __init__(self, camera: CameraRunner, latency_log: LatencyLog | None = None) -> None:
        self.camera = camera
        self.relay = MediaRelay()
        self.sources = {kind: CameraVideoTrack(camera, kind, latency_log) for kind in KINDS}

    def subscribe(self, which: str) -> MediaStreamTrack:
        return self.relay.subscribe(self.sources[which], buffered=False)

    def stop(self) -> None:
        for track in self.sources.values():
            track.stop()
