"""The FSR engine as a Ray Serve deployment shared by every camera of the cluster.

Each call is one camera frame's face crops (`EngineRequest`: 16 px crops at x8 are 768 bytes a
face); `@serve.batch` gathers the calls that arrive within `batch_wait_ms` from any camera, up to
`max_batch` of them, and the replica runs all their crops through the engine at once, where a
batch of N faces costs far less than N calls. Track ids are only unique within a camera, and the
engine keeps per-track state (step 2's temporal latent), so each (camera, track) gets a replica-
wide key. A replica that dies takes its temporal state with it: the faces it served restart
smoothing on the replica that replaces it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from ray import serve

from engines.base import Enhancer
from streamer.config import EnhanceConfig
from streamer.enhancer import build_enhancer


@dataclass(frozen=True)
class EngineRequest:
    """One camera frame's crops (N, s, s, 3) and their track ids; `forget`: tracks that ended."""

    camera: str
    scale: int
    crops: np.ndarray
    track_ids: tuple[int, ...]
    forget: tuple[int, ...] = ()


@dataclass
class BatchStats:
    """Batch sizes formed so far: camera frames per engine call, and faces per engine call."""

    requests: Counter[int] = field(default_factory=Counter)
    faces: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, dict[int, int]]:
        return {"requests": dict(self.requests), "faces": dict(self.faces)}


class FaceEngine:
    """One replica: an engine per scale (a camera may switch scale live), built on first use."""

    def __init__(self, enhance: EnhanceConfig, max_batch: int, batch_wait_s: float) -> None:
        self.cfg = enhance
        self.engines: dict[int, Enhancer] = {}
        self.keys: dict[tuple[str, int], int] = {}
        self._next_key = itertools.count(1)
        self.stats = BatchStats()
        batched: Any = self.enhance  # serve.batch's setters, which its type hints do not show
        batched.set_max_batch_size(max_batch)
        batched.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def enhance(self, requests: list[EngineRequest]) -> list[np.ndarray]:
        # The engine is blocking CPU work; in a thread, the replica still answers health checks.
        return await asyncio.to_thread(self._run, requests)

    def batch_stats(self) -> dict[str, dict[int, int]]:
        return self.stats.as_dict()

    def reset_stats(self) -> None:
        self.stats = BatchStats()

    def _run(self, requests: list[EngineRequest]) -> list[np.ndarray]:
        self.stats.requests[len(requests)] += 1
        self.stats.faces[sum(len(r.track_ids) for r in requests)] += 1
        out: dict[int, np.ndarray] = {}
        for scale, group in _by_scale(requests):
            engine = self._engine(scale)
            gone = [
                self.keys.pop((r.camera, t)) for _, r in group for t in r.forget if (r.camera, t) in self.keys
            ]
            if gone:
                engine.forget(gone)
            live = [(i, r) for i, r in group if r.track_ids]
            if not live:
                continue
            batch = np.concatenate([r.crops for _, r in live])
            ids = [self._key(r.camera, t) for _, r in live for t in r.track_ids]
            faces = engine.enhance(batch, ids)
            start = 0
            for i, r in live:
                out[i] = faces[start : start + len(r.track_ids)]
                start += len(r.track_ids)
        empty = np.zeros((0, 0, 0, 3), np.uint8)
        return [out.get(i, empty) for i in range(len(requests))]

    def _engine(self, scale: int) -> Enhancer:
        if scale not in self.engines:
            self.engines[scale] = build_enhancer(replace(self.cfg, scale=scale))
        return self.engines[scale]

    def _key(self, camera: str, track_id: int) -> int:
        key = self.keys.get((camera, track_id))
        if key is None:
            key = self.keys[(camera, track_id)] = next(self._next_key)
        return key


def _by_scale(requests: list[EngineRequest]) -> Iterator[tuple[int, list[tuple[int, EngineRequest]]]]:
    groups: dict[int, list[tuple[int, EngineRequest]]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(r.scale, []).append((i, r))
    yield from groups.items()
