"""The detection stage: which frames get a detector pass, where in the frame it looks, where it
runs, and how its results are carried to the frame being processed.

A full 720p frame at native width costs CenterFace ~110 ms of CPU on one core and still misses
faces under 12 px. With `scan = "regions"` (the default) a pass every `interval` frames looks
only around the known faces, at one tile of a rolling scan and where the picture changed, each
enlarged so 10 px faces are found (streamer.regions); the whole frame at `input_width` is run
only every `full_every` frames, for faces too large for the regions. `scan = "full"` runs the
whole frame on every pass, as before.

In live mode a pass runs in its own thread on the newest frame handed to it, and the stage picks
its result up whenever one is ready; between results, optical flow carries the last detections
along. Latency per frame stays flat, and the second core does the detecting. File jobs run it
inline every `interval` frames so their output does not depend on timing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamer.config import DetectConfig
from streamer.detectors.base import FaceDetector
from streamer.regions import (
    Region,
    detect_in_regions,
    face_regions,
    merge,
    motion_regions,
    scan_tiles,
    shrink,
)
from streamer.stats import StageStats
from streamer.track import iou_matrix
from streamer.types import Detection, Frame, Track

log = logging.getLogger(__name__)

FIRST_DETECTION_WAIT_S = 5.0
"""How long the first live frame waits for a detection, so the first frames already have faces."""


def carry_forward(
    detections: list[Detection], then: np.ndarray, now: np.ndarray, keep_lost: bool = True
) -> list[Detection]:
    """Move detections found on an earlier frame (`then`, grey) to where their faces are in `now`.

    A background detection arrives several frames late; on a panning camera the faces have moved
    by more than their own 10-24 px size, so matched as they are they would land on bare wall.
    Pyramidal Lucas-Kanade flow of each face's landmarks and box corners gives its shift (the
    median, robust to a point lost on a flat patch); a face whose points were all lost keeps its
    position, or is left out when `keep_lost` is False.
    """
    if not detections:
        return detections
    pts = []
    for d in detections:
        x1, y1, x2, y2 = d.box
        pts.append(np.vstack([d.landmarks, [[x1, y1], [x2, y1], [x1, y2], [x2, y2]]]))
    p0 = np.concatenate(pts).astype(np.float32).reshape(-1, 1, 2)
    p1, status, _ = cv2.calcOpticalFlowPyrLK(
        then,
        now,
        p0,
        np.empty_like(p0),
        winSize=(15, 15),
        maxLevel=3,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
    )
    flow = (p1 - p0).reshape(len(detections), 9, 2)
    ok = status.reshape(len(detections), 9).astype(bool)
    moved = []
    for d, f, good in zip(detections, flow, ok, strict=True):
        if not good.any():
            if keep_lost:
                moved.append(d)
            continue
        dx, dy = np.median(f[good], axis=0)
        shift = np.array([dx, dy], dtype=np.float32)
        moved.append(Detection(box=d.box + np.tile(shift, 2), score=d.score, landmarks=d.landmarks + shift))
    return moved


@dataclass(frozen=True)
class Plan:
    """What one detector pass looks at: the whole frame (at `input_width`) and/or regions."""

    full: bool
    regions: list[Region] = field(default_factory=list)
    keep: list[Detection] = field(default_factory=list)
    """Known faces left out of the regions (over budget), carried to this frame by flow."""


def run_plan(detector: FaceDetector, image: np.ndarray, plan: Plan, max_faces: int) -> list[Detection]:
    found = detector.detect(image) if plan.full else []
    found += detect_in_regions(detector, image, plan.regions)
    return merge(found + plan.keep, max_faces)


class BackgroundDetector:
    def __init__(self, detector: FaceDetector, max_faces: int) -> None:
        self.detector = detector
        self.max_faces = max_faces
        self._cond = threading.Condition()
        self._pending: tuple[int, np.ndarray, Plan] | None = None
        self._result: tuple[int, list[Detection]] | None = None
        self._busy = False
        self._stopped = False
        self.runs = 0
        self.last_seconds = 0.0
        self.last_cpu_seconds = 0.0
        self._thread = threading.Thread(target=self._work, name="detector", daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._busy and self._pending is None

    def submit(self, index: int, image: np.ndarray, plan: Plan) -> None:
        """Hand over a frame; a frame still waiting is replaced (the newest one is what matters)."""
        with self._cond:
            self._pending = (index, image, plan)
            self._cond.notify()

    def poll(self) -> tuple[int, list[Detection]] | None:
        """(frame index, detections) of a finished run not yet collected, else None."""
        with self._cond:
            result, self._result = self._result, None
            return result

    def wait(self, timeout: float) -> tuple[int, list[Detection]] | None:
        """Block until a result is ready (used at start, so the first frames already have faces)."""
        with self._cond:
            self._cond.wait_for(lambda: self._result is not None or self._stopped, timeout=timeout)
            result, self._result = self._result, None
            return result

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stopped)
                if self._stopped:
                    return
                assert self._pending is not None
                index, image, plan = self._pending
                self._pending = None
                self._busy = True
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                detections = run_plan(self.detector, image, plan, self.max_faces)
            except Exception:  # a bad frame must not kill detection for the rest of the stream
                log.exception("detection failed on frame %d; continuing", index)
                detections = None
            with self._cond:
                self._busy = False
                self.last_seconds = time.perf_counter() - t0
                self.last_cpu_seconds = time.thread_time() - c0
                if detections is not None:
                    self._result = (index, detections)
                    self.runs += 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)


class DetectionStage:
    """Detections for every frame, from one call per frame (`step`).

    `interval` may change between frames (a live control). `background` runs the detector off the
    frame path; its results, computed on an earlier frame, are moved to the current one by flow.
    Every pass records its CPU time as "detector cpu" (the figure `bench detection` compares).
    """

    def __init__(
        self, detector: FaceDetector, cfg: DetectConfig, background: bool, stats: StageStats
    ) -> None:
        self.detector = detector
        self.cfg = cfg
        self.interval = cfg.interval
        self.stats = stats
        self.background = BackgroundDetector(detector, cfg.max_faces) if background else None
        self.runs = 0
        self._frames = 0
        self._last_full: int | None = None
        self._scan_next = 0
        self._tiles: tuple[tuple[int, int], list[Region]] | None = None
        self._motion_ref: np.ndarray | None = None
        self._submitted: dict[int, np.ndarray] = {}
        self._prev_gray: np.ndarray | None = None
        self._anchors: list[Detection] = []

    def step(self, frame: Frame, tracks: Sequence[Track] = ()) -> list[Detection] | None:
        """This frame's detections: fresh ones, or the last ones carried along by flow; None
        before the first detection and after a frame size change. `tracks` (the tracker's output
        on the previous frame) are looked at by region passes beside the last detections, so a
        face missed by one pass is searched again where the tracker still has it."""
        gray = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)
        detections = self._detect(frame, gray, tracks)
        detections = self._follow(gray) if detections is None else detections
        self._anchors = detections or []
        self._prev_gray = gray
        self._frames += 1
        return detections

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

    def _plan(self, gray: np.ndarray, tracks: Sequence[Track]) -> Plan:
        """The next pass: the whole frame when `scan` says so or `full_every` frames have passed
        since the last full pass (or the size changed), plus the regions of streamer.regions."""
        h, w = gray.shape
        size_changed = self._prev_gray is not None and self._prev_gray.shape != gray.shape
        full = (
            self.cfg.scan == "full"
            or self._last_full is None
            or size_changed
            or self._frames - self._last_full >= self.cfg.full_every
        )
        if full:
            self._last_full = self._frames
        if self.cfg.scan == "full":
            return Plan(full=True)
        anchors = [] if size_changed else [d.box for d in self._anchors]
        others = np.array([t.box for t in tracks], dtype=np.float64).reshape(-1, 4)
        if len(anchors) and len(others):
            # A track still matched by a detection is already looked at through that detection.
            others = others[iou_matrix(others, np.array(anchors, dtype=np.float64)).max(axis=1) < 0.3]
        picked = face_regions([*anchors, *([] if size_changed else list(others))], w, h)
        regions = [r for _, r in picked]
        covered = {i for i, _ in picked}
        keep = [d for i, d in enumerate(self._anchors) if i not in covered and not size_changed]
        if keep and self._prev_gray is not None:
            keep = carry_forward(keep, self._prev_gray, gray, keep_lost=False)
        if self._tiles is None or self._tiles[0] != (w, h):
            self._tiles = ((w, h), scan_tiles(w, h))
        tiles = self._tiles[1]
        regions.append(tiles[self._scan_next % len(tiles)])
        self._scan_next += 1
        small = shrink(gray)
        if self._motion_ref is not None:
            regions += motion_regions(self._motion_ref, small, w, h, covered=regions)
        self._motion_ref = small
        return Plan(full=full, regions=regions, keep=keep)

    def _run_inline(self, image: np.ndarray, plan: Plan) -> list[Detection]:
        c0 = time.thread_time()
        detections = run_plan(self.detector, image, plan, self.cfg.max_faces)
        self.stats.record("detector cpu", time.thread_time() - c0)
        return detections

    def _detect(self, frame: Frame, gray: np.ndarray, tracks: Sequence[Track]) -> list[Detection] | None:
        """Detections for this frame, or None when none ran or arrived. A background result
        computed on an earlier frame is carried to this one by optical flow first."""
        due = self._frames % self.interval == 0
        bg = self.background
        if bg is None:
            if not due:
                return None
            self.runs += 1
            return self._run_inline(frame.image, self._plan(gray, tracks))
        if due and bg.idle:
            bg.submit(self._frames, frame.image, self._plan(gray, tracks))
            self._submitted[self._frames] = gray
        result = bg.wait(FIRST_DETECTION_WAIT_S) if self.runs == 0 else bg.poll()
        if result is None:
            return None
        self.runs += 1
        self.stats.record("detector (background)", bg.last_seconds)
        self.stats.record("detector cpu", bg.last_cpu_seconds)
        submitted_at, detections = result
        then = self._submitted.pop(submitted_at, None)
        self._submitted = {k: v for k, v in self._submitted.items() if k > submitted_at}
        if then is not None and submitted_at != self._frames and then.shape == gray.shape:
            detections = carry_forward(detections, then, gray)
        return detections

    def close(self) -> None:
        if self.background is not None:
            self.background.close()
