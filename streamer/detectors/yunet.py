"""YuNet (libfacedetection's detector, the one OpenCV's model zoo ships) through OpenCV's own
`cv2.FaceDetectorYN`, which does YuNet's anchor-free decoding and NMS in C++.

Why OpenCV and not ONNX Runtime with our own decoder: `FaceDetectorYN` is the reference
implementation of YuNet's post-processing, it runs the dynamic and the fixed-size 640x640 exports
alike (it reshapes the network to the size it is given), and it needs nothing beyond the
headless OpenCV we already depend on. The frame is resized like CenterFace's (aspect kept, to
`input_width`, a multiple of 32; see `centerface.network_size`), so the same widths are compared.
OpenCV's DNN threads are process-wide (`cv2.setNumThreads`), so `DetectConfig.threads` does not
apply here; benchmarks compare CPU time, which is not affected by that.

YuNet's five landmarks come in the order InsightFace uses (the eye on the image's left first,
then the other eye, the nose, the mouth corners left to right), so alignment takes them as is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from streamer.config import DetectConfig
from streamer.detectors.base import CapLogger, DetectorError, check_frame, finalize
from streamer.detectors.centerface import network_size
from streamer.types import Detection

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

OUTPUTS = frozenset(f"{head}_{stride}" for head in ("cls", "obj", "bbox", "kps") for stride in (8, 16, 32))
NMS_IOU = 0.3
TOP_K = 5000
"""Candidates kept before NMS; `finalize` applies our own `max_faces` after it."""


def is_yunet_layout(model: onnx.ModelProto) -> bool:
    """YuNet's graphs (libfacedetection.train exports, OpenCV zoo) name their 12 heads like this."""
    return {o.name for o in model.graph.output} == OUTPUTS


class YuNetDetector:
    """YuNet on OpenCV's DNN module (CPU). One instance serves one thread at a time: the
    network's input size is set per call."""

    def __init__(self, path: Path, cfg: DetectConfig) -> None:
        self.cfg = cfg
        self.path = path
        self.name = f"yunet:{path.stem}"
        try:
            self.model = cv2.FaceDetectorYN.create(str(path), "", (320, 320), cfg.threshold, NMS_IOU, TOP_K)
        except cv2.error as exc:
            raise DetectorError(f"OpenCV cannot load YuNet from {path}: {str(exc).strip()[-200:]}") from None
        self._size = (320, 320)
        self._on_cap = CapLogger(self.name)
        log.info("YuNet detector %s (OpenCV %s)", path, cv2.__version__)

    def detect_many(self, images: list[np.ndarray], width: int) -> list[list[Detection]]:
        """One call per image: FaceDetectorYN takes one picture at a time."""
        return [self.detect(image, width) for image in images]

    def detect(self, image: np.ndarray, width: int | None = None) -> list[Detection]:
        check_frame(image)
        h, w = image.shape[:2]
        net_w, _, resized_h, scale = network_size(w, h, width or self.cfg.input_width)
        resized = image if (net_w, resized_h) == (w, h) else cv2.resize(image, (net_w, resized_h))
        if self._size != (net_w, resized_h):
            self.model.setInputSize((net_w, resized_h))
            self._size = (net_w, resized_h)
        try:
            _, faces = self.model.detect(resized)
        except cv2.error as exc:
            raise DetectorError(f"{self.name} failed on a {w}x{h} frame: {str(exc).strip()[-200:]}") from None
        rows = np.zeros((0, 15), np.float32) if faces is None else np.asarray(faces, np.float32)
        xy = rows[:, :14] / scale  # x, y, w, h, then five landmark points; the score is column 14
        boxes = np.concatenate([xy[:, :2], xy[:, :2] + xy[:, 2:4]], axis=1)
        return finalize(boxes, rows[:, 14], xy[:, 4:].reshape(-1, 5, 2), self.cfg, image.shape, self._on_cap)
