"""One camera on the cluster: a Ray actor holding what the single-machine server's camera holds.

Inside it runs a `CameraRunner` (the same thread, source, pipeline and per-frame preparation as
on one machine, its engine call overlapped: overlap.py) and a `SharedEncoder` per (track, codec,
rendition) that the head asks for, each feeding an `Outlet`, a packet sink the head drains by
long polling. Pulling, not pushing: the head may restart or fall behind without the camera
noticing, and an actor restarted on another node needs no address of anyone.

Every answer carries the actor's `epoch`, new at each (re)start, so the head knows when
sequence numbers and timestamps begin again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from engines.base import INPUT_SIZE_FOR_SCALE
from streamer.cluster.overlap import OverlappedEngine, OverlappedPipeline
from streamer.config import AppConfig, ConfigError, EnhanceConfig, SourceConfig
from streamer.enhancer import build_enhancer
from streamer.run_loop import Processor
from streamer.server.camera import CameraRunner, ProcessorFactory
from streamer.server.encoder import EncodedFrame, SharedEncoder, renditions

OUTLET_FRAMES = 30
"""Encoded frames an outlet keeps for a head that polls late (a second at 30 fps)."""
OUTLET_IDLE_S = 10.0
"""An outlet nobody polled for this long is closed and its encoder stops."""
ENGINE_TIMEOUT_S = 10.0

Packet = tuple[int, bytes, int, bool, int]
"""(sequence number, data, pts on the 90 kHz clock, keyframe, camera frame index)"""


class Outlet:
    """A packet sink (encoder.PacketSink) that keeps the newest frames for the head to collect."""

    def __init__(self, encoder: SharedEncoder) -> None:
        self.encoder = encoder
        self.frames: deque[tuple[int, EncodedFrame]] = deque(maxlen=OUTLET_FRAMES)
        self.polled = time.monotonic()
        self._seq = 0
        self._event = asyncio.Event()

    def deliver(self, frame: EncodedFrame) -> None:
        self._seq += 1
        self.frames.append((self._seq, frame))
        self._event.set()

    def end(self) -> None:
        self._event.set()

    async def after(self, seq: int, timeout: float) -> list[Packet]:
        """The frames after `seq`, waiting up to `timeout` for the first one."""
        self.polled = time.monotonic()
        if self._seq <= seq:
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                return []
        return [
            (s, bytes(f.packet), int(f.packet.pts or 0), f.keyframe, f.index)
            for s, f in self.frames
            if s > seq
        ]


@dataclass(frozen=True)
class EngineRoute:
    """Where a camera's faces are enhanced: the Serve app's deployment, or (`app` empty) an
    engine of the camera's own, in its actor."""

    app: str = ""
    deployment: str = ""


def _processor_factory(route: EngineRoute) -> ProcessorFactory:
    def make(cfg: AppConfig, name: str) -> Processor:
        return OverlappedPipeline(
            cfg, name, engines_factory=lambda e: {INPUT_SIZE_FOR_SCALE[e.scale]: _engine(route, name, e)}
        )

    return make


def _engine(route: EngineRoute, camera: str, cfg: EnhanceConfig) -> OverlappedEngine:
    scale = cfg.scale
    if not route.app:
        local = build_enhancer(cfg)

        def call_local(crops: np.ndarray, ids: Sequence[int], forget: Sequence[int]) -> np.ndarray:
            if forget:
                local.forget(forget)
            return local.enhance(crops, ids)

        return OverlappedEngine(f"{local.name} (own)", scale, call_local)

    from ray import serve

    from streamer.cluster.engine_service import EngineRequest

    handle = serve.get_deployment_handle(route.deployment, app_name=route.app)

    def call_serve(crops: np.ndarray, ids: Sequence[int], forget: Sequence[int]) -> np.ndarray:
        request = EngineRequest(camera, scale, crops, tuple(ids), tuple(forget))
        return handle.enhance.remote(request).result(timeout_s=ENGINE_TIMEOUT_S)

    return OverlappedEngine(f"{cfg.engine} (ray serve)", scale, call_serve)


class CameraActor:
    """Used through `ray.remote` (head.py places it); its methods are coroutines, so polls of
    several tracks and the state wait side by side on the actor's event loop."""

    def __init__(self, cfg: AppConfig, source: SourceConfig, route: EngineRoute) -> None:
        self.cfg = cfg
        self.epoch = uuid.uuid4().hex
        self.runner = CameraRunner(cfg, source, processor_factory=_processor_factory(route))
        self.outlets: dict[tuple[str, str, str], Outlet] = {}
        self.offered = renditions(cfg.server)
        self._started = False

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self.runner.start(asyncio.get_running_loop())

    async def ready(self, timeout: float) -> str:
        """Once the pipeline is built and the source open: "" or why the camera cannot start."""
        self._start()
        await asyncio.to_thread(self.runner.wait_ready, timeout)
        return self.runner.error or ""

    async def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def poll(
        self, key: tuple[str, str, str], epoch: str, after: int, keyframe: str, timeout: float
    ) -> tuple[str, list[Packet]]:
        """The encoded frames of `key` (track, codec, rendition) after `after`; `keyframe` is a
        reason the head's viewers asked for one (subscribe, pli, overflow) or empty."""
        self._start()
        outlet = self._outlet(key)
        if keyframe:
            outlet.encoder.request_keyframe(keyframe)
        self._close_idle()
        return self.epoch, await outlet.after(after if epoch == self.epoch else 0, timeout)

    async def state(
        self, epoch: str, after: int, thumbs_after: int, dashboards: int, timeout: float
    ) -> dict[str, Any]:
        """What the head shows of this camera: the newest frame's metadata once there is one after
        `after`, and the camera's status, at the latest after `timeout`; the face thumbnails when
        newer than `thumbs_after`, made only while the head has `dashboards` open."""
        self._start()
        runner = self.runner
        runner.ws_clients = dashboards
        if epoch != self.epoch:
            thumbs_after = 0
        published = await runner.wait_newer(after if epoch == self.epoch else 0, timeout)
        status = runner.status
        out: dict[str, Any] = {
            "epoch": self.epoch,
            "status": [status.state, status.attempt, status.last_error],
            "error": runner.error,
            "seq": 0,
        }
        processor = runner.processor
        if processor is not None:
            out["backend"], out["controls"] = processor.backend_name, processor.controls
            out["faces_enhanced"] = getattr(processor, "faces_enhanced", 0)
        thumbs_seq, thumbs_json = runner.thumbs
        if thumbs_seq > thumbs_after:
            out["thumbs"] = [thumbs_seq, thumbs_json]
        if published is not None:
            result = published.result
            out.update(
                seq=published.seq,
                meta=json.loads(published.meta_json),
                age_s=time.monotonic() - result.frame.capture_time,
                started_s=time.monotonic() - result.started,
                times=result.times.seconds,
            )
        return out

    async def apply(self, changes: dict[str, object]) -> tuple[str, dict[str, object]]:
        """("", controls) or (why it was refused, {}): a ConfigError reaches the head as text."""
        processor = self.runner.processor
        if processor is None:
            return "camera is still starting; retry in a moment", {}
        try:
            return "", processor.apply(changes)
        except ConfigError as exc:
            return str(exc), {}

    def _outlet(self, key: tuple[str, str, str]) -> Outlet:
        outlet = self.outlets.get(key)
        if outlet is None:
            kind, codec, rendition = key
            encoder = SharedEncoder(self.runner, kind, codec, self.offered[rendition], self.cfg.server)
            outlet = self.outlets[key] = Outlet(encoder)
            encoder.subscribe(outlet)
            self.runner.viewers = len(self.outlets)
        return outlet

    def _close_idle(self) -> None:
        now = time.monotonic()
        for key, outlet in list(self.outlets.items()):
            if now - outlet.polled > OUTLET_IDLE_S:
                outlet.encoder.stop()
                del self.outlets[key]
        self.runner.viewers = len(self.outlets)
