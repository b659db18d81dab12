"""Detection off the frame path, for live sources.

At 720p the detector costs ~200 ms on 2 cores (faces of 10-24 px need the native resolution), six
frames at 30 fps. Run inline every N frames, it makes every Nth frame late. Here it runs in its own
thread on the newest frame handed to it, and the pipeline picks its result up whenever one is
ready; the tracker's motion model carries faces in between. Latency per frame stays flat, and the
second core does the detecting.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from streamer.detect import FaceDetector
from streamer.types import Detection

log = logging.getLogger(__name__)


class BackgroundDetector:
    def __init__(self, detector: FaceDetector) -> None:
        self.detector = detector
        self.name = f"{detector.name} (background)"
        self._cond = threading.Condition()
        self._pending: tuple[int, np.ndarray] | None = None
        self._result: tuple[int, list[Detection]] | None = None
        self._busy = False
        self._stopped = False
        self.runs = 0
        self.errors = 0
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
                self.errors += 1
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
