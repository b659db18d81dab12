"""The face alignment every FSR model is trained and run with: a similarity transform of 5
landmarks to a canonical template, owned here because it is part of what the models expect.

The template is InsightFace's ArcFace template (via `insightface.utils.face_align`) shrunk
inside the crop by `PAD` on each side, so the crop holds the whole head outline plus context
for a seamless feathered paste. Training data is aligned with the same function the pipeline
uses (streamer.align), so a crop at inference looks like the crops the models learned from.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from insightface.utils import face_align

PAD = 0.25
"""Fraction of the ArcFace 112 px box added as margin on each side of the crop."""


def alignment_matrix(landmarks: np.ndarray, size: int, pad: float = PAD) -> np.ndarray:
    """2x3 affine mapping frame pixels to a `size` x `size` aligned crop."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        m128 = face_align.estimate_norm(np.asarray(landmarks, dtype=np.float32), image_size=128)
    s = size / 128.0 / (1.0 + 2.0 * pad)
    offset = size * pad / (1.0 + 2.0 * pad)
    m = m128.astype(np.float64) * s
    m[:, 2] += offset
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
