"""A camera's engine calls, overlapped with its next frames.

A round trip to a Serve replica costs tens of milliseconds on top of the engine itself (p50 ~60
ms measured here for a trivial `@serve.batch` call), so a camera that waited for it would run at
the engine's pace, not the camera's. Here a frame submits its crops and goes on: it is composited
with each track's newest enhanced face, which is the previous call's when that one has come back.
At most one call is in flight per camera, so a slow engine lowers how often faces are refreshed,
never the frame rate; a call that fails (its replica died) is dropped and the next frame makes a
new one, which Serve routes to a live replica.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from engines.base import INPUT_SIZE_FOR_SCALE
from streamer.pipeline import Pipeline
from streamer.types import EnhancedFace, FaceCrop

log = logging.getLogger(__name__)

EngineCall = Callable[[np.ndarray, Sequence[int], Sequence[int]], np.ndarray]
"""(crops, track ids, tracks that ended) -> enhanced crops: one blocking engine round trip."""


class OverlappedEngine:
    """The camera's side of its engine, whichever it is (a Serve deployment or its own): an
    `Enhancer` for the pipeline's crop sizes and bookkeeping, whose calls run in one thread."""

    def __init__(self, name: str, scale: int, call: EngineCall) -> None:
        self.name = name
        self.scale = scale
        self.input_size = INPUT_SIZE_FOR_SCALE[scale]
        self.call = call
        self.failures = 0
        self._forget: list[int] = []
        self._pending: Future[np.ndarray] | None = None
        self._pending_ids: list[int] = []
        self._pending_crops: np.ndarray = np.empty((0,), np.uint8)
        self._gone: set[int] = set()
        """Tracks that ended while a call for them was in flight: their faces are not kept."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"engine-{name}")

    @property
    def output_size(self) -> int:
        return self.input_size * self.scale

    @property
    def idle(self) -> bool:
        return self._pending is None

    def submit(self, crops: np.ndarray, track_ids: Sequence[int]) -> None:
        forget, self._forget = self._forget, []
        self._gone.clear()
        self._pending_ids = list(track_ids)
        self._pending_crops = crops
        self._pending = self._executor.submit(self.call, crops, self._pending_ids, forget)

    def collect(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(track id, enhanced face, the crop it was made from) of the call in flight once it has
        come back, else nothing."""
        pending = self._pending
        if pending is None or not pending.done():
            return []
        self._pending = None
        try:
            faces = pending.result()
        except Exception as exc:  # its replica died or timed out: the next frame asks again
            self.failures += 1
            if self.failures in (1, 10) or self.failures % 100 == 0:
                log.warning("engine %s: call failed (%d so far): %s", self.name, self.failures, exc)
            return []
        return [
            (t, face, crop)
            for t, face, crop in zip(self._pending_ids, faces, self._pending_crops, strict=True)
            if t not in self._gone
        ]

    def enhance(self, crops: np.ndarray, track_ids: Sequence[int] | None = None) -> np.ndarray:
        """A blocking call, for callers outside the camera loop."""
        return self.call(crops, list(track_ids or range(len(crops))), [])

    def forget(self, track_ids: Sequence[int]) -> None:
        self._forget.extend(track_ids)
        self._gone.update(track_ids)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class OverlappedPipeline(Pipeline):
    """The camera pipeline with its engine call overlapped (module docstring); everything else is
    the single-machine pipeline's."""

    enhancer: OverlappedEngine

    def _enhance(self, crops: list[FaceCrop]) -> list[EnhancedFace]:
        engine = self.enhancer
        back = engine.collect()
        for track_id, image, crop in back:
            self._latest[track_id] = (self.frames, image, crop)
        self.faces_enhanced += len(back)
        cached = self._cached()
        if engine.idle:
            todo = self._turns(crops, cached)
            if todo:
                engine.submit(np.stack([c.image for c in todo]), [c.track_id for c in todo])
        return [EnhancedFace(c.track_id, cached[c.track_id], c) for c in crops if c.track_id in cached]
