"""The face alignment every FSR model is trained and run with: a similarity transform of 5
landmarks to a canonical template, owned here because it is part of what the models expect.

The template is InsightFace's ArcFace five points (left eye, right eye, nose tip, left and right
mouth corner, in image order) as `insightface.utils.face_align.estimate_norm` places them in a
128 px crop (shifted 8 px right, not scaled), shrunk inside the crop by `PAD` on each side, so the
crop holds the whole head outline plus context for a seamless feathered paste. The similarity is
scikit-image's least-squares estimate (Umeyama's), the one InsightFace itself calls, so crops are
framed exactly as before without importing InsightFace here. Training data is aligned with the
same function the pipeline uses (streamer.align), so a crop at inference looks like the crops the
models learned from.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
"""InsightFace's `arcface_dst`: the five points in its 112 px crop."""
PAD = 0.25
"""Fraction of the ArcFace 112 px box added as margin on each side of the crop."""
_TEMPLATE_128 = ARCFACE_112 + np.array([8.0, 0.0])


def alignment_matrix(landmarks: np.ndarray, size: int, pad: float = PAD) -> np.ndarray:
    """2x3 affine mapping frame pixels to a `size` x `size` aligned crop. Degenerate landmarks
    (all on one point) get a plain shift of their centre onto the template's, not NaNs."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    tform = SimilarityTransform.from_estimate(points, _TEMPLATE_128)
    if tform:
        m128 = np.asarray(tform.params[:2], dtype=np.float64)
    else:
        m128 = np.hstack([np.eye(2), (_TEMPLATE_128.mean(0) - points.mean(0))[:, None]])
    s = size / 128.0 / (1.0 + 2.0 * pad)
    m = m128 * s
    m[:, 2] += size * pad / (1.0 + 2.0 * pad)
    return m


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int, pad: float = PAD
) -> tuple[np.ndarray, np.ndarray]:
    """Crop and align one face; returns (crop, matrix). Area resampling when shrinking keeps
    tiny faces from aliasing; linear when enlarging."""
    m = alignment_matrix(landmarks, size, pad)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(image, m, (size, size), flags=interp, borderMode=cv2.BORDER_REFLECT)
    return crop, m


def pixel_map(kx: float, ky: float, ox: float = 0.0, oy: float = 0.0) -> np.ndarray:
    """3x3 map between two samplings of one picture, pixel centres kept: x -> (x + 0.5) kx - 0.5
    (+ an offset), the convention of an area resize and of the pipeline's paste-back
    (streamer.align.inverse_matrix)."""
    return np.array([[kx, 0.0, 0.5 * kx - 0.5 + ox], [0.0, ky, 0.5 * ky - 0.5 + oy], [0.0, 0.0, 1.0]])
