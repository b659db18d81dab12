"""Face alignment in the pipeline: aligned crops of every track, and the exact inverse that
pastes an enhanced crop back. The transform itself (`align_face`, `alignment_matrix`) belongs to
the engines (engines.data.align): the models were trained on crops framed by it.
"""

from __future__ import annotations

import cv2
import numpy as np

from engines.data.align import align_face
from streamer.types import FaceCrop, Track


def crop_tracks(image: np.ndarray, tracks: list[Track], size: int) -> list[FaceCrop]:
    """Aligned crops for all tracks of a frame, ready to be batched into one engine call."""
    crops = []
    for t in tracks:
        crop, m = align_face(image, t.landmarks, size)
        crops.append(FaceCrop(track_id=t.track_id, image=crop, matrix=m, size=size))
    return crops


def inverse_matrix(matrix: np.ndarray, crop_size: int, out_size: int, frame_scale: float = 1.0) -> np.ndarray:
    """2x3 affine mapping an `out_size` enhanced crop back into a frame scaled by `frame_scale`.

    Pixel centres are kept consistent: crop pixel u in the enhanced image corresponds to
    (u + 0.5) * crop_size / out_size - 0.5 in the original crop.
    """
    r = crop_size / out_size
    to_crop = np.array([[r, 0.0, 0.5 * r - 0.5], [0.0, r, 0.5 * r - 0.5], [0.0, 0.0, 1.0]])
    inv = np.vstack([cv2.invertAffineTransform(matrix), [0.0, 0.0, 1.0]])
    k = frame_scale
    to_out = np.array([[k, 0.0, 0.5 * k - 0.5], [0.0, k, 0.5 * k - 0.5], [0.0, 0.0, 1.0]])
    return (to_out @ inv @ to_crop)[:2]
