"""The video tracks of a camera (original and enhanced), as each viewer's sender reads them.

Two ways, picked by `server.shared_encoder`:
- shared (the default): each viewer gets a `PacketTrack` fed by the `SharedEncoder` of its
  (track, codec, rendition) (encoder.py), so a camera track is encoded once per codec and
  rendition whatever the number of viewers; senders only packetize.
- per viewer: `MediaRelay.subscribe(..., buffered=False)` proxies of one `CameraVideoTrack` per
  kind. The relay reads the camera once per published result and hands every proxy only the
  newest frame (a viewer whose encoder falls behind skips frames instead of queueing them), and
  each viewer's sender encodes it, following that viewer's own bandwidth estimate.
Either way the pipeline runs once per frame.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import av
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from streamer.config import ServerConfig
from streamer.server.camera import CameraRunner
from streamer.server.encoder import EncodedFrame, Rendition, SharedEncoder, renditions
from streamer.server.latency import INDEX_MASK, LatencyLog

KINDS = ("enhanced", "original")
MAX_LAG_S = 0.25
"""How long an encoded frame may wait for a viewer's sender (a starved event loop) before that
viewer skips ahead to the next keyframe. Per-viewer encoding never queues (its sender takes the
newest frame), so this path may not queue much either: a bound in frames would be a second and
more at the frame rates of a loaded machine."""


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
            if self.latency_log is not None:
                self.latency_log.mark(
                    published.result.frame.index & INDEX_MASK,
                    {f"sent_{self.which}": time.monotonic()},
                    first_only=True,
                )
            return frame


class PacketTrack(MediaStreamTrack):
    """One viewer's feed of a shared encoder's packets (a `PacketSink`).

    It subscribes when the sender first reads, i.e. once the viewer's transport is up, so the
    keyframe that subscribing forces is not spent while ICE and DTLS are still running. It
    starts at a keyframe (nothing before one decodes), and if its sender falls `MAX_LAG_S`
    behind it drops what it holds and restarts at the next keyframe, asking for one: its delay
    stays bounded and no other viewer waits for it. A viewer that does not show this track
    (`watch(False)`: the dashboard's Enhanced-only view does not show the original) leaves the
    encoder, which stops once nobody is left, and the camera then stops converting that kind;
    watching again resubscribes, on a keyframe."""

    kind = "video"

    def __init__(self, encoder: SharedEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.overflows = 0
        self._queue: deque[tuple[float, EncodedFrame]] = deque()
        """(time delivered, frame)"""
        self._wake = asyncio.Event()
        self._reading = False
        """The sender has asked for a packet: the viewer's transport is up."""
        self._subscribed = False
        self._ended = False
        self._need_key = True
        self.watching = True

    @property
    def queued(self) -> int:
        """Encoded frames waiting for the sender."""
        return len(self._queue)

    def deliver(self, frame: EncodedFrame) -> None:
        now = time.monotonic()
        if self._queue and now - self._queue[0][0] > MAX_LAG_S:
            self._queue.clear()
            self._need_key = True
            self.overflows += 1
            self.encoder.request_keyframe("overflow")
        if self._need_key:
            if not frame.keyframe:
                return
            self._need_key = False
        self._queue.append((now, frame))
        self._wake.set()

    def end(self) -> None:
        self._ended = True
        self._wake.set()

    def request_keyframe(self) -> None:
        """The viewer reported lost pictures (PLI or FIR reached its sender)."""
        self.encoder.request_keyframe("pli")

    def watch(self, on: bool) -> None:
        """Whether the viewer shows this track, so whether it is fed (and encoded for it)."""
        self.watching = on
        self._follow()

    def _follow(self) -> None:
        """Subscribed exactly while the sender reads, the viewer watches and the track is live."""
        wanted = self._reading and self.watching and self.readyState == "live" and not self._ended
        if wanted and not self._subscribed:
            self.encoder.subscribe(self)
        elif self._subscribed and not wanted:
            self.encoder.unsubscribe(self)
            self._queue.clear()
            self._need_key = True
        self._subscribed = wanted

    async def recv(self) -> av.Packet:  # aiortc packetizes av.Packet as is
        if not self._reading:
            self._reading = True
            self._follow()
        while not self._queue:
            if self.readyState != "live" or self._ended:
                raise MediaStreamError
            self._wake.clear()
            await self._wake.wait()
        return self._queue.popleft()[1].packet

    def stop(self) -> None:
        super().stop()
        self._follow()
        self._wake.set()


class CameraTracks:
    """What a camera's viewers subscribe to: its shared encoders, or its relay of raw frames."""

    def __init__(
        self, camera: CameraRunner, server: ServerConfig, latency_log: LatencyLog | None = None
    ) -> None:
        self.camera = camera
        self.server = server
        self.latency_log = latency_log
        self.shared = server.shared_encoder
        offered = renditions(server)
        # Per-viewer encoding follows each viewer's bandwidth itself; there is nothing to pick.
        self.renditions: dict[str, Rendition] = offered if self.shared else {"full": offered["full"]}
        self.encoders: dict[tuple[str, str, str], SharedEncoder] = {}
        self.relay = MediaRelay()
        self.sources = {kind: CameraVideoTrack(camera, kind, latency_log) for kind in KINDS}

    def subscribe(self, which: str, codec: str, rendition: str = "full") -> MediaStreamTrack:
        if not self.shared:
            return self.relay.subscribe(self.sources[which], buffered=False)
        return PacketTrack(self.encoder(which, codec, rendition))

    def encoding(self, kind: str) -> bool:
        """Whether the camera's `kind` track is encoded for anybody: one of its shared encoders
        runs, or (per-viewer encoding) viewers' senders read that kind."""
        if self.shared:
            return any(e.running for (which, _, _), e in self.encoders.items() if which == kind)
        return self.camera.watched(kind)

    def encoder(self, which: str, codec: str, rendition: str) -> SharedEncoder:
        key = (which, codec, rendition)
        if key not in self.encoders:
            self.encoders[key] = SharedEncoder(
                self.camera, which, codec, self.renditions[rendition], self.server, self.latency_log
            )
        return self.encoders[key]

    def stop(self) -> None:
        for track in self.sources.values():
            track.stop()
        for encoder in self.encoders.values():
            encoder.stop()
