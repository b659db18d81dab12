"""What every detector shares: the interface, the error type and the post-processing policy.

Every detector takes a BGR uint8 frame of any size and returns `Detection`s in that frame's
pixel coordinates, so the tracker and the aligner never need to know at which resolution the
network ran. The policy that must not differ between detectors (score threshold, smallest face,
cap on faces per frame) lives here, in `finalize`, and is applied after the network-specific
decoding.

The detectors depend on this small module only; `streamer.detectors.build_detector` picks one
and imports it lazily, so importing this module never loads ONNX Runtime or InsightFace.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

import numpy as np

from streamer.config import DetectConfig
from streamer.types import Detection

log = logging.getLogger(__name__)

ACCEPTED = (
    "'centerface' (the CenterFace model shipped with facestream), 'centerface-int8' (the same, quantized "
    "here on first use), a path to an InsightFace/SCRFD or YuNet "
    "detector .onnx file, or an InsightFace model pack folder holding a det_*.onnx "
    "(e.g. ~/.insightface/models/buffalo_l)"
)


class DetectorError(RuntimeError):
    """The detector cannot be built or run: missing model, wrong kind of model, bad frame."""


@runtime_checkable
class FaceDetector(Protocol):
    """`width` is the network input width for this call (default: `DetectConfig.input_width`);
    the detection stage enlarges small regions through it, so 10 px faces reach the size the
    network finds. `detect_many` runs same-sized images in one call, where the network allows,
    because a small region costs more in per-call overhead than in pixels."""

    name: str

    def detect(self, image: np.ndarray, width: int | None = None) -> list[Detection]: ...

    def detect_many(self, images: list[np.ndarray], width: int) -> list[list[Detection]]: ...


def check_frame(image: np.ndarray) -> None:
    """Reject what no detector can read, with a message that says what was expected."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise DetectorError(f"detector expects a uint8 BGR image of shape (H, W, 3), got {got}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise DetectorError(f"frame too small for detection: {image.shape[1]}x{image.shape[0]}")


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


class CapLogger:
    """Logs the first capped frame at WARNING and later ones at DEBUG: a crowd in view would
    otherwise write one warning per frame."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.warned = False

    def __call__(self, found: int, cap: int) -> None:
        level = logging.DEBUG if self.warned else logging.WARNING
        log.log(
            level, "%s: %d faces in one frame, keeping the %d best (detect max_faces)", self.name, found, cap
        )
        self.warned = True


def finalize(
    boxes: np.ndarray,
    scores: np.ndarray,
    landmarks: np.ndarray,
    cfg: DetectConfig,
    frame_shape: tuple[int, ...],
    on_cap: CapLogger,
) -> list[Detection]:
    """Apply the detector-independent policy to decoded, frame-space candidates.

    Boxes are clipped to the frame; `min_face_px` applies to the shorter side of the box in
    frame pixels (a face narrower than that cannot be aligned usefully); the `max_faces`
    highest scores are kept, so a crowd costs bounded work downstream.
    """
    h, w = frame_shape[:2]
    boxes = boxes.astype(np.float32, copy=True)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
    side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    ok = (scores >= cfg.threshold) & (side >= cfg.min_face_px)
    boxes, scores, landmarks = boxes[ok], scores[ok], landmarks[ok]
    order = np.argsort(-scores, kind="stable")
    if len(order) > cfg.max_faces:
        on_cap(len(order), cfg.max_faces)
        order = order[: cfg.max_faces]
    return [
        Detection(
            box=boxes[i], score=float(scores[i]), landmarks=landmarks[i].astype(np.float32).reshape(5, 2)
        )
        for i in order
    ]
