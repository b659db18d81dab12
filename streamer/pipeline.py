"""The face pipeline for one camera, wired top to bottom.

source frame -> detect (streamer.detection: every `interval` frames, flow in between) -> track ->
align crops -> enhance (one batched engine call per frame) -> composite. `process` is plain
blocking CPU work, driven by `streamer.run_loop.run_source` for files, cameras and benchmarks.
Live settings (`apply`) can change while it runs; they take effect at the next frame.

`process` is two halves, `front` (detect, track, choose, crop) and `back` (enhance, composite,
label), which a file job runs in two threads (streamer.stage_threads) so one frame is enhanced
while the next is detected. Each half owns its own state, and whatever the back half needs from
the front (the tracks that ended, the settings and engines in force) travels with the frame
(`Staged`), so both halves switch at the same frame whichever thread runs them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from engines.base import INPUT_SIZE_FOR_SCALE, Enhancer
from engines.history import crop_change
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


@dataclass
class Staged:
    """A frame between the two halves: the front half's results, and what the back half must
    take from the front rather than share with it while both run."""

    frame: Frame
    tracks: list[Track]
    crops: list[FaceCrop]
    dead: list[int]
    """Tracks that ended at this frame: the back half drops their state before enhancing it."""
    cfg: AppConfig
    """The settings this frame was taken with (a live change applies from one frame on)."""
    engines: dict[int, Enhancer]
    """The engines its crops were cut for, by input side."""
    times: dict[str, float]
    started: float


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
        self._back_cfg = cfg
        self._back_engines = self.engines
        """The settings and engines of the frame the back half is on (`Staged`)."""
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
        return _configured(self.cfg, self.engines)

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
            # The old engines are closed by the back half once it reaches this frame.
            engines = self.engines_factory(new.enhance)
            self.engines, self.entries = engines, EntryChooser(engines)
            log.info("%s: enhancer now %s", self.source_name, ", ".join(e.name for e in engines.values()))
        self.detection.interval = new.detect.interval
        self.cfg = new

    def process(self, frame: Frame) -> FrameResult:
        """One frame through both halves in the caller's thread (cameras, benchmarks)."""
        return self.back(self.front(frame))

    def front(self, frame: Frame) -> Staged:
        """Detect, track, choose and crop. Frames must come in order (tracking follows faces
        from one to the next); live changes are taken here, at the start of a frame."""
        started = time.monotonic()
        self._apply_pending()
        times: dict[str, float] = {}
        image = frame.image

        with self.stats.time("detect", times):
            detections = self.detection.step(frame, self._tracks)

        with self.stats.time("track", times):
            tracks = self.tracker.update(detections, image)
            dead = self.tracker.pop_dead()
            self.entries.forget(dead)
            self._tracks = tracks
            chosen = self._choose(tracks)

        with self.stats.time("crop", times):
            crops = self._crop(image, chosen)

        return Staged(frame, tracks, crops, dead, self.cfg, self.engines, times, started)

    def back(self, staged: Staged) -> FrameResult:
        """Enhance, composite and label a frame from `front`, in the order `front` made them: the
        engines keep state per track across frames."""
        self._take_over(staged)
        times = staged.times

        with self.stats.time("enhance", times):
            if staged.dead:
                for engine in self._back_engines.values():
                    engine.forget(staged.dead)
                self.gallery.forget(staged.dead)
                for track_id in staged.dead:
                    self._latest.pop(track_id, None)
            faces = self._enhance(staged.crops)

        with self.stats.time("composite", times):
            output = self._compose(staged.frame.image, faces)
            if faces:
                label_frame(output)

        self.frames += 1
        self.faces_total += len(faces)
        return FrameResult(staged.frame, output, staged.tracks, faces, StageTimes(times), staged.started)

    def _take_over(self, staged: Staged) -> None:
        """The back half switches to the settings and engines of its frame; engines a live change
        replaced are closed here, where no earlier frame can still need them."""
        if staged.engines is not self._back_engines:
            for old in self._back_engines.values():
                old.close()
            self._back_engines = staged.engines
        self._back_cfg = staged.cfg

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
            out = self._back_engines[side].enhance(
                np.stack([c.image for c in todo]), [c.track_id for c in todo]
            )
            for c, img in zip(todo, out, strict=True):
                enhanced[c.track_id] = img
                self._latest[c.track_id] = (self.frames, img, c.image)
            self.faces_enhanced += len(todo)
        return [EnhancedFace(c.track_id, enhanced[c.track_id], c) for c in crops if c.track_id in enhanced]

    def _cached(self) -> dict[int, np.ndarray]:
        """Each track's newest enhanced face, where it has the engine's current size."""
        size = _configured(self._back_cfg, self._back_engines).output_size
        return {tid: img for tid, (_, img, _) in self._latest.items() if img.shape[0] == size}

    def _turns(self, crops: list[FaceCrop], cached: Mapping[int, np.ndarray]) -> list[FaceCrop]:
        """The crops to enhance now: within the live budget, faces never enhanced first, then
        the ones enhanced longest ago. A face whose aligned LR crop differs from the one of its
        newest enhancement by less than `reuse_below` (mean absolute difference, 0-255) is not
        due at all: the engine would redraw the same face."""
        cfg = self._back_cfg
        budget = (cfg.enhance.per_frame if cfg.live else 0) or len(crops)
        limit = cfg.enhance.reuse_below
        due = [
            c
            for c in crops
            if c.track_id not in cached or crop_change(c.image, self._latest[c.track_id][2]) >= limit
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
        out = self._back_cfg.output
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
        engines = list(self.engines.values())
        if self._back_engines is not self.engines:  # replaced by a change no frame took to the back
            engines += self._back_engines.values()
        for engine in engines:
            engine.close()


def _configured(cfg: AppConfig, engines: Mapping[int, Enhancer]) -> Enhancer:
    return engines[INPUT_SIZE_FOR_SCALE[cfg.enhance.scale]]


def _live_values(cfg: AppConfig) -> dict[str, object]:
    return {name: getattr(getattr(cfg, s.section), s.name) for name, s in live_settings().items()}
