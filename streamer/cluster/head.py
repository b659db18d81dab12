"""The head's side of each remote camera: the server's camera and encoder interfaces, fed by the
camera's actor instead of a local thread and local encoders.

- `RemoteCamera` places the actor and follows its state (metadata, thumbnails, status) from a
  thread, publishing it for the dashboard, the WebSocket and the metrics as a local camera would.
  An actor whose node died is restarted by Ray (`cluster.actor_restarts`); one that cannot start
  or has used its restarts is recreated by the head with exponential backoff, shown meanwhile as
  `down` with the attempt count and the last error.
- `RemoteEncoder` is a `SharedEncoder` whose packets come from the actor's encoder of the same
  (track, codec, rendition): the viewers' `PacketTrack`s, keyframe requests and fan-out are the
  single-machine ones. Timestamps are kept rising across an actor's restart, so a viewer's
  decoder and jitter buffer just see a gap, starting at the new actor's first keyframe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import ray
from aiortc.mediastreams import VIDEO_TIME_BASE

from streamer.cluster.camera_actor import CameraActor, EngineRoute
from streamer.cluster.resources import CAMERA
from streamer.config import AppConfig, ConfigError, ServerConfig, SourceConfig
from streamer.server.camera import STALE_AFTER_S, CameraRunner, CameraStatus, Published
from streamer.server.encoder import EncodedFrame, Rendition, SharedEncoder
from streamer.server.metrics import Metrics
from streamer.server.tracks import CameraTracks
from streamer.types import Frame, FrameResult, StageTimes, Track

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
"""A camera actor's start: a node may have to start a worker process and import the pipeline."""
POLL_S = 1.0
RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 30.0
GAP_PTS = 3000
"""Timestamp step across an actor restart (1/30 s on the 90 kHz clock)."""


def shape_only(height: int, width: int) -> np.ndarray:
    """A (height, width, 3) array of no memory: the server's views read only the shapes of a
    result's frame and output, and the pictures stay in the actor."""
    return np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (height, width, 3))


class RemoteProcessor:
    """The camera's pipeline as the server's handlers see it: name, controls, live changes."""

    def __init__(self, camera: RemoteCamera) -> None:
        self.camera = camera

    @property
    def backend_name(self) -> str:
        return str(self.camera.remote.get("backend", ""))

    @property
    def controls(self) -> dict[str, object]:
        return dict(self.camera.remote.get("controls", {}))

    def apply(self, changes: dict[str, object]) -> dict[str, object]:
        """Validated and applied in the actor; the handler waits one actor round trip (a few ms)."""
        actor = self.camera.actor
        if actor is None:
            raise ConfigError("camera is down; retry once it is back")
        refused, controls = ray.get(actor.apply.remote(changes), timeout=10.0)
        if refused:
            raise ConfigError(refused)
        return dict(controls)

    def process(self, frame: Frame) -> FrameResult:
        """Frames are processed in the camera's actor, never on the head."""
        raise TypeError("a remote camera's frames are processed in its actor")

    def close(self) -> None:
        """The actor is the camera's to stop (RemoteCamera.stop)."""


class RemoteCamera(CameraRunner):
    """A camera whose pipeline runs in a Ray actor; see the module docstring."""

    def __init__(
        self,
        cfg: AppConfig,
        source: SourceConfig,
        metrics: Metrics | None,
        place: Callable[[], Any],
    ) -> None:
        super().__init__(cfg, source, metrics)
        self.place = place
        self.actor: Any = None
        self.remote: dict[str, Any] = {}
        """The actor's newest state answer."""
        self._down: CameraStatus | None = CameraStatus("starting")
        self._actor_lock = threading.Lock()

    @property
    def status(self) -> CameraStatus:
        if self._down is not None:
            return self._down
        state, attempt, last_error = self.remote.get("status", ("starting", 0, None))
        if state == "live" and self.last_frame_age > STALE_AFTER_S:
            return CameraStatus("stalled", attempt, f"no frame for {self.last_frame_age:.0f} s")
        return CameraStatus(state, attempt, last_error)

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        with self._actor_lock:
            if self.actor is not None:
                ray.kill(self.actor, no_restart=True)
                self.actor = None

    def _run(self) -> None:
        attempt, started = 0, time.monotonic()
        while not self._stop.is_set():
            try:
                started = time.monotonic()
                self._start_actor()
                self._follow()
            except Exception as exc:  # the camera is down; the others go on
                # Backoff starts over only after an actor that lasted: one that dies again and
                # again right after starting keeps doubling the wait.
                attempt = 1 if time.monotonic() - started > RETRY_MAX_S else attempt + 1
                self._discard_actor()
                if self._stop.is_set():
                    break
                delay = min(RETRY_MAX_S, RETRY_INITIAL_S * 2 ** (attempt - 1))
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                self._down = CameraStatus("down", attempt, reason)
                log.error(
                    "camera %s: down (attempt %d), retrying in %.0f s: %s", self.name, attempt, delay, reason
                )
                self._ready.set()
                self._stop.wait(delay)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)

    def _start_actor(self) -> None:
        actor = self.place()
        with self._actor_lock:
            self.actor = actor
        error = ray.get(actor.ready.remote(READY_TIMEOUT_S), timeout=READY_TIMEOUT_S + 10)
        if error:
            raise RuntimeError(error)
        self.processor = RemoteProcessor(self)
        self._down = None
        self._ready.set()

    def _discard_actor(self) -> None:
        with self._actor_lock:
            actor, self.actor = self.actor, None
        if actor is not None:
            ray.kill(actor, no_restart=True)

    def _follow(self) -> None:
        """Until the actor is gone for good: publish each state answer it gives. While Ray
        restarts it (its node died), calls fail or wait; the camera shows stalled meanwhile."""
        epoch, seq, thumbs = "", 0, 0
        while not self._stop.is_set():
            call = self.actor.state.remote(epoch, seq, thumbs, self.ws_clients, POLL_S)
            try:
                state = ray.get(call, timeout=POLL_S + 10)
            except ray.exceptions.ActorDiedError:
                raise
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                log.info("camera %s: actor unavailable (%s); waiting for Ray to restart it", self.name, exc)
                self._stop.wait(0.5)
                continue
            self.remote = state
            if state["epoch"] != epoch:
                epoch, seq, thumbs = state["epoch"], 0, 0
            if state["seq"] > seq:
                seq = state["seq"]
                self._publish_remote(state)
            if "thumbs" in state:  # counted here: an actor's own count restarts with it
                thumbs, self._thumbs_json = state["thumbs"]
                self._thumbs_seq += 1

    def _publish_remote(self, state: dict[str, Any]) -> None:
        meta = state["meta"]
        now = time.monotonic()
        w, h = meta["frame_size"]
        ow, oh = meta["output_size"]
        frame = Frame(shape_only(h, w), int(meta["index"]), 0.0, now - state["age_s"])
        tracks = [
            Track(t["id"], np.asarray(t["box"], np.float32), np.zeros((5, 2), np.float32), 1.0)
            for t in meta["tracks"]
        ]
        result = FrameResult(
            frame, shape_only(oh, ow), tracks, [], StageTimes(state["times"]), now - state["started_s"]
        )
        meta["viewers"] = self.viewers
        self._times.append(now)
        meta["fps"] = round(self.fps, 2)
        if self.metrics is not None:
            self.metrics.observe(self.name, result, state["age_s"], int(meta["dropped"]))
        self._seq += 1
        self._latest = Published(self._seq, result, now, {}, json.dumps(meta), _no_frames, {})
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # loop closed between the check and the call: shutting down
                pass


def _no_frames(kind: str, result: FrameResult, published: float) -> av.VideoFrame:
    raise RuntimeError("a cluster camera sends encoded packets; there are no frames on the head")


class RemoteEncoder(SharedEncoder):
    """Packets of the actor's encoder of this (track, codec, rendition), fanned out here."""

    camera: RemoteCamera

    def __init__(
        self, camera: RemoteCamera, kind: str, codec: str, rendition: Rendition, server: ServerConfig
    ) -> None:
        super().__init__(camera, kind, codec, rendition, server)
        self._ask = ""

    def request_keyframe(self, reason: str) -> None:
        """Forwarded with the next poll; a subscriber's request outranks a loss report."""
        self.requests[reason] += 1
        if reason == "subscribe" or not self._ask:
            self._ask = reason

    async def _run(self) -> None:
        key = (self.kind, self.codec, self.rendition.name)
        epoch, after, shift, last_pts = "", 0, 0, -GAP_PTS
        log.info("remote encoder %s started", self.label)
        try:
            while self._sinks:
                actor = self.camera.actor
                if actor is None:
                    await asyncio.sleep(0.2)
                    continue
                ask, self._ask = self._ask, ""
                try:
                    new_epoch, packets = await actor.poll.remote(key, epoch, after, ask, POLL_S)
                except ray.exceptions.RayError:
                    self._ask = self._ask or ask
                    await asyncio.sleep(0.2)
                    continue
                if new_epoch != epoch:
                    epoch, after = new_epoch, 0
                    if packets:
                        shift = last_pts + GAP_PTS - packets[0][2]
                for seq, data, pts, keyframe, index in packets:
                    after = seq
                    packet = av.Packet(data)
                    last_pts = pts + shift
                    packet.pts, packet.time_base = last_pts, VIDEO_TIME_BASE
                    packet.is_keyframe = keyframe
                    self.frames += 1
                    self.keyframes += int(keyframe)
                    encoded = EncodedFrame(packet, keyframe, index)
                    for sink in list(self._sinks):
                        sink.deliver(encoded)
        finally:
            self._task = None
            log.info("remote encoder %s stopped after %d frames", self.label, self.frames)


class RemoteTracks(CameraTracks):
    """A remote camera's viewers: shared encoders only (the pictures are not on the head)."""

    camera: RemoteCamera

    def encoder(self, which: str, codec: str, rendition: str) -> SharedEncoder:
        key = (which, codec, rendition)
        if key not in self.encoders:
            self.encoders[key] = RemoteEncoder(
                self.camera, which, codec, self.renditions[rendition], self.server
            )
        return self.encoders[key]


def place_camera(cfg: AppConfig, source: SourceConfig, route: EngineRoute) -> Any:
    """A camera actor, spread over the nodes that offer the camera resource, and restarted by Ray
    on another one when its node dies."""
    return (
        ray.remote(CameraActor)
        .options(
            num_cpus=0,
            resources={CAMERA: 1},
            max_restarts=cfg.cluster.actor_restarts,
            scheduling_strategy="SPREAD",
        )
        .remote(cfg, source, route)
    )


def camera_factory(
    route: EngineRoute,
) -> Callable[[AppConfig, SourceConfig, Metrics], tuple[CameraRunner, CameraTracks]]:
    """The server's cameras as actors (`place_camera`)."""

    def build(cfg: AppConfig, source: SourceConfig, metrics: Metrics) -> tuple[CameraRunner, CameraTracks]:
        camera = RemoteCamera(cfg, source, metrics, lambda: place_camera(cfg, source, route))
        return camera, RemoteTracks(camera, cfg.server)

    return build
