"""The detection stage: which frames get a detector run, where it runs, and how its results are
carried to the frame being processed.

At 720p the detector costs ~200 ms on 2 cores (faces of 10-24 px need the native resolution), six
frames at 30 fps. Run inline every N frames, it makes every Nth frame late. In live mode it runs
in its own thread on the newest frame handed to it, and the stage picks its result up whenever
one is ready; between results, optical flow carries the last detections along. Latency per frame
stays flat, and the second core does the detecting. File jobs run it inline every N frames so
their output does not depend on timing.
"""

from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np

from streamer.detectors.base import FaceDetector
from streamer.stats import StageStats
from streamer.types import Detection, Frame

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


class BackgroundDetector:
    def __init__(self, detector: FaceDetector) -> None:
        self.detector = detector
        self._cond = threading.Condition()
        self._pending: tuple[int, np.ndarray] | None = None
        self._result: tuple[int, list[Detection]] | None = None
        self._busy = False
        self._stopped = False
        self.runs = 0
        self.last_seconds = 0.0
        self._thread = threading.Thread(target=self._work, name="detector", daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._busy and self._pending is None

    def submit(self, index: int, image: np.ndarray) -> None:
        """Hand over a frame; a frame still waiting is replaced (the newest one is what matters)."""
        with self._cond:
            self._pending = (index, image)
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
                index, image = self._pending
                self._pending = None
                self._busy = True
            t0 = time.perf_counter()
            try:
                detections = self.detector.detect(image)
            except Exception:  # a bad frame must not kill detection for the rest of the stream
                log.exception("detection failed on frame %d; continuing", index)
                detections = None
            with self._cond:
                self._busy = False
                self.last_seconds = time.perf_counter() - t0
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
    """

    def __init__(self, detector: FaceDetector, interval: int, background: bool, stats: StageStats) -> None:
        self.detector = detector
        self.interval = interval
        self.stats = stats
        self.background = BackgroundDetector(detector) if background else None
        self.runs = 0
        self._frames = 0
        self._submitted: dict[int, np.ndarray] = {}
        self._prev_gray: np.ndarray | None = None
        self._anchors: list[Detection] = []

    def step(self, frame: Frame) -> list[Detection] | None:
        """This frame's detections: fresh ones, or the last ones carried along by flow; None
        before the first detection and after a frame size change."""
        gray = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)
        detections = self._detect(frame, gray)
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

    def _detect(self, frame: Frame, gray: np.ndarray) -> list[Detection] | None:
        """Detections for this frame, or None when none ran or arrived. A background result
        computed on an earlier frame is carried to this one by optical flow first."""
        due = self._frames % self.interval == 0
        bg = self.background
        if bg is None:
            if not due:
                return None
            self.runs += 1
            return self.detector.detect(frame.image)
        if due and bg.idle:
            bg.submit(self._frames, frame.image)
            self._submitted[self._frames] = gray
        result = bg.wait(FIRST_DETECTION_WAIT_S) if self.runs == 0 else bg.poll()
        if result is None:
            return None
        self.runs += 1
        self.stats.record("detector (background)", bg.last_seconds)
        submitted_at, detections = result
        then = self._submitted.pop(submitted_at, None)
        self._submitted = {k: v for k, v in self._submitted.items() if k > submitted_at}
        if then is not None and submitted_at != self._frames and then.shape == gray.shape:
            detections = carry_forward(detections, then, gray)
        return detections

    def close(self) -> None:
        if self.background is not None:
            self.background.close()
