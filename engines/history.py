"""Each track's last aligned LR crops, for a multi-frame step 1.

A track gives many frames of one face with sub-pixel motion and independent noise; a
multi-frame step 1 (engines/arch/blocks.py `frames`) fuses the last K of them. The crops are
already registered to one another by the aligner (every frame is warped onto the same landmark
template), which is the registration the model was trained with (engines/data/video_degrade.py).

The history holds what the engine was given: a file job enhances every face of every frame, so
its history is consecutive frames; a live camera with a per-frame budget enhances each face every
few frames, so its history spans a little more time (more motion, still registered).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import cv2
import numpy as np

RESET_ABOVE = 48.0
"""A crop that differs from the track's newest one by more than this (mean absolute difference,
0-255) starts a new history: the track jumped to another face or was occluded. Consecutive
crops of a talking face differ by 9-31 (streamer/config.py `reuse_below`), far below it."""


class TrackHistory:
    def __init__(self, frames: int) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.frames = frames
        self._crops: dict[int, deque[np.ndarray]] = {}

    def push(self, crops: np.ndarray, track_ids: Sequence[int] | None) -> np.ndarray:
        """Add this batch's crops (N, s, s, 3) to their tracks; each crop's window (N, K, s, s, 3),
        oldest first, newest (the crop itself) last. A young track repeats its oldest crop, as
        training does; without track ids every crop is its own one-frame track."""
        out = np.empty((len(crops), self.frames, *crops.shape[1:]), crops.dtype)
        for i, crop in enumerate(crops):
            if track_ids is None:
                out[i] = crop
                continue
            past = self._crops.get(track_ids[i])
            if past is None or crop_change(past[-1], crop) > RESET_ABOVE:
                past = self._crops[track_ids[i]] = deque(maxlen=self.frames)
            past.append(crop.copy())
            have = list(past)
            out[i, : self.frames - len(have)] = have[0]
            out[i, self.frames - len(have) :] = have
        return out

    def forget(self, track_ids: Sequence[int]) -> None:
        for t in track_ids:
            self._crops.pop(t, None)


def crop_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 crops (inf when their sizes differ: a new scale)."""
    if a.shape != b.shape:
        return float("inf")
    return float(cv2.absdiff(a, b).mean())
