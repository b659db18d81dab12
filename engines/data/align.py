"""The project's face alignment template, owned by the engines: the 5-point similarity transform
that frames every face crop the FSR models see, at training and at inference.

The template is InsightFace's ArcFace five points (left eye, right eye, nose tip, left and right
mouth corner, in image order) as `insightface.utils.face_align.estimate_norm` places them in a
128 px image (shifted 8 px right), shrunk inside the crop by `PAD` of the box on each side, so
the crop holds the whole head outline plus context. The similarity is Umeyama's least-squares
estimate, the one scikit-image's `SimilarityTransform.estimate` (and so InsightFace) computes;
kept here in numpy so that the engines need neither streamer/ nor InsightFace to align their
training data.
"""

from __future__ import annotations

import cv2
import numpy as np

ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
"""InsightFace's `arcface_dst`: the five points in its 112 px crop."""
PAD = 0.25
"""Fraction of the ArcFace box added as margin on each side of the crop."""


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 similarity (rotation, uniform scale, translation) mapping src points onto dst points
    in the least-squares sense (Umeyama 1991, with the reflection guard)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n, dim = src.shape
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / n
    d = np.ones(dim)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    u, sig, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    t = np.eye(dim + 1)
    if rank == 0:
        return t * np.nan
    if rank == dim - 1:
        if np.linalg.det(u) * np.linalg.det(vt) > 0:
            t[:dim, :dim] = u @ vt
        else:
            s = d[-1]
            d[-1] = -1
            t[:dim, :dim] = u @ np.diag(d) @ vt
            d[-1] = s
    else:
        t[:dim, :dim] = u @ np.diag(d) @ vt
    scale = 1.0 / s_c.var(0).sum() * (sig @ d)
    t[:dim, dim] = mu_d - scale * (t[:dim, :dim] @ mu_s)
    t[:dim, :dim] *= scale
    return t


def alignment_matrix(landmarks: np.ndarray, size: int, pad: float = PAD) -> np.ndarray:
    """2x3 affine mapping frame pixels to a `size` x `size` aligned crop."""
    dst128 = ARCFACE_112.copy()
    dst128[:, 0] += 8.0  # estimate_norm(image_size=128): the 112 px points shifted, not scaled
    m128 = umeyama(np.asarray(landmarks, np.float64).reshape(5, 2), dst128)[:2]
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
