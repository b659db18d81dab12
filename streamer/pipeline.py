"""The face pipeline for one camera, wired top to bottom.

source frame -> detect (streamer.detection: every `interval` frames, flow in between) -> track ->
align crops -> enhance (one batched engine call per frame) -> composite. `process` is plain
blocking CPU work, driven by `streamer.run_loop.run_source` for files, cameras and benchmarks.
Live settings (`apply`) can change while it runs; they take effect at the next frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import cv2
import numpy as np

from engines.base import INPUT_SIZE_FOR_SCALE, Enhancer
from streamer.align import crop_tracks
from streamer.composite import Gallery, compose_gallery, compose_inset, compose_upscale
from streamer.config import AppConfig, ConfigError, EnhanceConfig, apply, live_settings
from streamer.detection import DetectionStage
from streamer.detectors import build_detector
from streamer.enhancer import build_engines
from streamer.entry import EntryChooser, native_side
from streamer.provenance import label_frame
from streamer.stats import StageStats
from streamer.track import Tracker
from streamer.types import EnhancedFace, FaceCrop, Frame, FrameResult, StageTimes, Track

log = logging.getLogger(__name__)

STAGES = ("detect", "track", "crop", "enhance", "composite")


class Pipeline:
    def __init__(
        self,
        cfg: AppConfig,
        source_name: str = "source",
        engines_factory: Callable[[EnhanceConfig], dict[int, Enhancer]] = build_engines,
    ) -> None:
        """`engines_factory` builds the engines by input side (streamer.enhancer.build_engines;
        the cluster passes remote ones)."""
        self.cfg = cfg
        self.source_name = source_name
        self.stats = StageStats()
        self.detection = DetectionStage(
            build_detector(cfg.detect),
            cfg.detect,
            background=cfg.detect.background and cfg.live,
            stats=self.stats,
        )
        self._tracks: list[Track] = []
        self.tracker = Tracker(cfg.track)
        self.engines_factory = engines_factory
        self.engines = engines_factory(cfg.enhance)
        self.entries = EntryChooser(self.engines)
        self.gallery = Gallery()
        self._pending: AppConfig | None = None
        self._lock = threading.Lock()
        self.frames = 0
        self.faces_total = 0
        self.faces_enhanced = 0
        self.faces_reused = 0
        self._latest: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        """Per track: frame of its newest enhancement, the enhanced face, the LR crop it came from."""

    @property
    def enhancer(self) -> Enhancer:
        """The engine of the configured scale (the one every face takes with fixed entry)."""
        return self.engines[INPUT_SIZE_FOR_SCALE[self.cfg.enhance.scale]]

    @property
    def backend_name(self) -> str:
        """The configured engine's name; which factor each face takes shows in `controls`
        (`entry`)."""
        return self.enhancer.name

    @property
    def controls(self) -> dict[str, object]:
        """The live settings as they apply now (control name -> value), and the engine shown."""
        return {**_live_values(self.cfg), "engine": self.cfg.enhance.engine}

    def apply(self, changes: Mapping[str, object]) -> dict[str, object]:
        """Validate live changes now (a bad value is refused to the caller) and apply them at the
        next frame. Changes compose in order: each builds on the last one accepted, applied or
        not. Returns the live settings that the next frame will use."""
        with self._lock:
            pending = apply(self._pending or self.cfg, changes)
            self._pending = pending
        return {**_live_values(pending), "engine": pending.enhance.engine}

    def _apply_pending(self) -> None:
        with self._lock:
            new, self._pending = self._pending, None
        if new is None:
            return
        if new.enhance != self.cfg.enhance:
            engines = self.engines_factory(new.enhance)
            for old in self.engines.values():
                old.close()
            self.engines, self.entries = engines, EntryChooser(engines)
            log.info("%s: enhancer now %s", self.source_name, ", ".join(e.name for e in engines.values()))
        self.detection.interval = new.detect.interval
        self.cfg = new

    def process(self, frame: Frame) -> FrameResult:
        started = time.monotonic()
        self._apply_pending()
        times: dict[str, float] = {}
        image = frame.image

        with self.stats.time("detect", times):
            detections = self.detection.step(frame, self._tracks)

        with self.stats.time("track", times):
            tracks = self.tracker.update(detections, image)
            dead = self.tracker.pop_dead()
            if dead:
                for engine in self.engines.values():
                    engine.forget(dead)
                self.entries.forget(dead)
                self.gallery.forget(dead)
                for track_id in dead:
                    self._latest.pop(track_id, None)
            self._tracks = tracks
            chosen = self._choose(tracks)

        with self.stats.time("crop", times):
            crops = self._crop(image, chosen)

        with self.stats.time("enhance", times):
            faces = self._enhance(crops)

        with self.stats.time("composite", times):
            output = self._compose(image, faces)
            if faces:
                label_frame(output)

        self.frames += 1
        self.faces_total += len(faces)
        return FrameResult(frame, output, tracks, faces, StageTimes(times), started)

    def _crop(self, image: np.ndarray, tracks: list[Track]) -> list[FaceCrop]:
        """Each face cropped at the input side of the engine it enters; a face too large for
        every entry is left out (it is shown as it is). With a single engine (fixed entry, or a
        cluster's remote engine) every face enters that one."""
        if self.cfg.enhance.entry == "fixed" or len(self.engines) == 1:
            return crop_tracks(image, tracks, self.enhancer.input_size)
        groups: dict[int, list[Track]] = {}
        for t in tracks:
            side = self.entries.choose(t.track_id, native_side(t.landmarks))
            if side is not None:
                groups.setdefault(side, []).append(t)
        return [c for side, group in groups.items() for c in crop_tracks(image, group, side)]

    def _enhance(self, crops: list[FaceCrop]) -> list[EnhancedFace]:
        """One batched engine call per entry for the faces whose turn it is (all of them unless
        `enhance.per_frame` is set in live mode); the others are shown with their track's newest
        enhanced face, pasted through this frame's alignment so it still sits on the face."""
        cached = self._cached()
        enhanced: dict[int, np.ndarray] = dict(cached)
        by_entry: dict[int, list[FaceCrop]] = {}
        for c in self._turns(crops, cached):
            by_entry.setdefault(c.size, []).append(c)
        for side, todo in by_entry.items():
            out = self.engines[side].enhance(np.stack([c.image for c in todo]), [c.track_id for c in todo])
            for c, img in zip(todo, out, strict=True):
                enhanced[c.track_id] = img
                self._latest[c.track_id] = (self.frames, img, c.image)
            self.faces_enhanced += len(todo)
        return [EnhancedFace(c.track_id, enhanced[c.track_id], c) for c in crops if c.track_id in enhanced]

    def _cached(self) -> dict[int, np.ndarray]:
        """Each track's newest enhanced face, where it has the engine's current size."""
        size = self.enhancer.output_size
        return {tid: img for tid, (_, img, _) in self._latest.items() if img.shape[0] == size}

    def _turns(self, crops: list[FaceCrop], cached: Mapping[int, np.ndarray]) -> list[FaceCrop]:
        """The crops to enhance now: within the live budget, faces never enhanced first, then
        the ones enhanced longest ago. A face whose aligned LR crop differs from the one of its
        newest enhancement by less than `reuse_below` (mean absolute difference, 0-255) is not
        due at all: the engine would redraw the same face."""
        budget = (self.cfg.enhance.per_frame if self.cfg.live else 0) or len(crops)
        limit = self.cfg.enhance.reuse_below
        due = [
            c
            for c in crops
            if c.track_id not in cached or _change(c.image, self._latest[c.track_id][2]) >= limit
        ]
        self.faces_reused += len(crops) - len(due)
        order = sorted(due, key=lambda c: self._latest[c.track_id][0] if c.track_id in cached else -1)
        return order[:budget]

    def _choose(self, tracks: list[Track]) -> list[Track]:
        """The largest faces first when there are more than the engine budget allows."""
        limit = self.cfg.enhance.max_faces
        if len(tracks) <= limit:
            return tracks
        size = [float(t.box[2] - t.box[0]) for t in tracks]
        order = np.argsort(size)[::-1][:limit]
        return [tracks[i] for i in sorted(order)]

    def _compose(self, image: np.ndarray, faces: list[EnhancedFace]) -> np.ndarray:
        out = self.cfg.output
        self.gallery.update(faces)
        if out.mode == "upscale":
            return compose_upscale(image, faces, out.upscale, out.feather)
        if out.mode == "inset":
            return compose_inset(image, faces, out.feather)
        if out.mode == "gallery":
            return compose_gallery(image, self.gallery)
        raise ConfigError(f"unknown output mode {out.mode!r}")

    def close(self) -> None:
        self.detection.close()
        for engine in self.engines.values():
            engine.close()


def _change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 crops (inf when their sizes differ: a new scale)."""
    if a.shape != b.shape:
        return float("inf")
    return float(cv2.absdiff(a, b).mean())


def _live_values(cfg: AppConfig) -> dict[str, object]:
    return {name: getattr(getattr(cfg, s.section), s.name) for name, s in live_settings().items()}
