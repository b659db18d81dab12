"""The face pipeline for one camera, wired top to bottom.

source frame -> detect (every `interval` frames) -> track -> align crops -> enhance (one batched
engine call per frame) -> composite. `process` is plain blocking CPU work: the file job calls it
in a loop, the server calls it from a worker thread. Controls (scale, mode, detection interval)
can change while it runs; they take effect at the next frame.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

import cv2
import numpy as np

from engines.base import Enhancer
from engines.factory import build_enhancer
from streamer.align import crop_tracks
from streamer.composite import Gallery, compose_gallery, compose_inset, compose_upscale
from streamer.config import AppConfig, ConfigError, validate
from streamer.detect import FaceDetector, build_detector
from streamer.detect_async import BackgroundDetector, carry_forward
from streamer.stats import StageStats
from streamer.track import Tracker
from streamer.types import Detection, EnhancedFace, FaceCrop, Frame, FrameResult, StageTimes, Track

log = logging.getLogger(__name__)

STAGES = ("detect", "track", "crop", "enhance", "composite")
FIRST_DETECTION_WAIT_S = 5.0


class Pipeline:
    def __init__(
        self,
        cfg: AppConfig,
        source_name: str = "source",
        detector: FaceDetector | None = None,
        enhancer: Enhancer | None = None,
    ) -> None:
        self.cfg = cfg
        self.source_name = source_name
        self.detector = detector or build_detector(cfg.detect)
        self.background = BackgroundDetector(self.detector) if cfg.detect.background else None
        self._submitted: dict[int, np.ndarray] = {}
        self._prev_gray: np.ndarray | None = None
        self._anchors: list[Detection] = []
        self.tracker = Tracker(cfg.track)
        self.enhancer = enhancer or build_enhancer(cfg.enhance)
        self.gallery = Gallery()
        self.stats = StageStats()
        self._interval = cfg.detect.interval
        self._since_detect = 0
        self._pending: dict[str, object] = {}
        self._lock = threading.Lock()
        self.frames = 0
        self.faces_total = 0
        self.detector_runs = 0
        self.faces_enhanced = 0
        self._latest: dict[int, tuple[int, np.ndarray]] = {}

    @property
    def backend_name(self) -> str:
        return self.enhancer.name

    @property
    def controls(self) -> dict[str, object]:
        return {
            "scale": self.cfg.enhance.scale,
            "mode": self.cfg.output.mode,
            "upscale": self.cfg.output.upscale,
            "detect_interval": self._interval,
            "engine": self.cfg.enhance.engine,
        }

    def set_controls(
        self,
        scale: int | None = None,
        mode: str | None = None,
        detect_interval: int | None = None,
        upscale: int | None = None,
    ) -> None:
        """Validate now (so a bad value is refused to the caller), apply at the next frame."""
        cfg = self.cfg
        if scale is not None:
            cfg = replace(cfg, enhance=replace(cfg.enhance, scale=int(scale)))
        if mode is not None:
            cfg = replace(cfg, output=replace(cfg.output, mode=str(mode)))
        if upscale is not None:
            cfg = replace(cfg, output=replace(cfg.output, upscale=int(upscale)))
        if detect_interval is not None:
            cfg = replace(cfg, detect=replace(cfg.detect, interval=int(detect_interval)))
        validate(cfg)
        with self._lock:
            self._pending["cfg"] = cfg

    def _apply_pending(self) -> None:
        with self._lock:
            new = self._pending.pop("cfg", None)
        if not isinstance(new, AppConfig):
            return
        if new.enhance != self.cfg.enhance:
            enhancer = build_enhancer(new.enhance)
            self.enhancer.close()
            self.enhancer = enhancer
            log.info("%s: enhancer now %s", self.source_name, enhancer.name)
        self._interval = new.detect.interval
        self.cfg = new

    def process(self, frame: Frame) -> FrameResult:
        self._apply_pending()
        times: dict[str, float] = {}
        image = frame.image

        with self.stats.time("detect", times):
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            detections = self._detect(frame, gray)
            detections = self._follow(gray) if detections is None else detections
            self._anchors = detections or []
            self._prev_gray = gray

        with self.stats.time("track", times):
            tracks = self.tracker.update(detections, image)
            dead = self.tracker.pop_dead()
            if dead:
                self.enhancer.forget(dead)
                self.gallery.forget(dead)
                for track_id in dead:
                    self._latest.pop(track_id, None)
            chosen = self._choose(tracks)

        with self.stats.time("crop", times):
            crops = crop_tracks(image, chosen, self.enhancer.input_size)

        with self.stats.time("enhance", times):
            faces = self._enhance(crops)

        with self.stats.time("composite", times):
            output = self._compose(image, faces)

        self.frames += 1
        self.faces_total += len(faces)
        return FrameResult(frame=frame, output=output, tracks=tracks, faces=faces, times=StageTimes(times))

    def _enhance(self, crops: list[FaceCrop]) -> list[EnhancedFace]:
        """One batched engine call for the faces whose turn it is (all of them unless
        `enhance.per_frame` is set); the others are shown with their track's newest enhanced face,
        pasted through this frame's alignment so it still sits on the face."""
        budget = self.cfg.enhance.per_frame or len(crops)
        size = self.enhancer.output_size
        cached = {tid: img for tid, (_, img) in self._latest.items() if img.shape[0] == size}
        order = sorted(crops, key=lambda c: self._latest[c.track_id][0] if c.track_id in cached else -1)
        todo = order[:budget]
        enhanced: dict[int, np.ndarray] = dict(cached)
        if todo:
            batch = np.stack([c.image for c in todo])
            out = self.enhancer.enhance(batch, [c.track_id for c in todo])
            for c, img in zip(todo, out, strict=True):
                enhanced[c.track_id] = img
                self._latest[c.track_id] = (self.frames, img)
            self.faces_enhanced += len(todo)
        return [EnhancedFace(c.track_id, enhanced[c.track_id], c) for c in crops if c.track_id in enhanced]

    def _follow(self, gray: np.ndarray) -> list[Detection] | None:
        """Between detections, the last detections carried along by optical flow, as measurements:
        a constant-velocity guess alone loses 10-24 px faces within a few frames of a camera pan,
        and late background detections then match nothing. The flow follows the detections
        themselves, not the tracker's smoothed output, so smoothing lag cannot feed back into the
        measurements and accumulate. None on the first frame or after a size change."""
        prev = self._prev_gray
        if prev is None or prev.shape != gray.shape or not self._anchors:
            return None
        return carry_forward(self._anchors, prev, gray, keep_lost=False)

    def _detect(self, frame: Frame, gray: np.ndarray) -> list[Detection] | None:
        """Detections for this frame, or None when none ran or arrived. A background result
        computed on an earlier frame is carried to this one by optical flow first."""
        due = self._since_detect % self._interval == 0
        self._since_detect += 1
        bg = self.background
        if bg is None:
            if not due:
                return None
            self.detector_runs += 1
            return self.detector.detect(frame.image)
        if due and bg.idle:
            bg.submit(self.frames, frame.image)
            self._submitted[self.frames] = gray
        result = bg.wait(FIRST_DETECTION_WAIT_S) if self.detector_runs == 0 else bg.poll()
        if result is None:
            return None
        self.detector_runs += 1
        self.stats.record("detector (background)", bg.last_seconds)
        submitted_at, detections = result
        then = self._submitted.pop(submitted_at, None)
        self._submitted = {k: v for k, v in self._submitted.items() if k > submitted_at}
        if then is not None and submitted_at != self.frames and then.shape == gray.shape:
            detections = carry_forward(detections, then, gray)
        return detections

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
        if self.background is not None:
            self.background.close()
        self.enhancer.close()
