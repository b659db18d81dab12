"""Which engine entry each face takes, from its native size in the frame.

A face is never rebuilt from fewer pixels than it has: one whose aligned crop is natively about
8, 16 or 32 px enters step 1 at x16, x8 or x4, one of about 64 px enters step 2 alone (x2), and
one larger than that is left as it is (a bicubic enlargement of a face that size is already
clear, and shrinking it to feed an engine would throw detail away). "About" is `TOLERANCE`: a
face up to that much larger than an entry's input still takes it. Going down to a smaller entry
needs the face to be clearly smaller (`HYSTERESIS`), so a face near a boundary does not flip
between engines (and flicker) from frame to frame; going up happens at once, which keeps the
rule above.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from engines.data.align import alignment_matrix

TOLERANCE = 1.1
HYSTERESIS = 0.15
_PROBE = 128
"""Crop side the native size is measured at (any side gives the same ratio)."""


def native_side(landmarks: np.ndarray) -> float:
    """Side, in frame pixels, of the region an aligned crop of this face covers."""
    m = alignment_matrix(landmarks, _PROBE)
    return _PROBE / float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))


class EntryChooser:
    """Per track, the input side (one of `sizes`) its face enters at, or None: left alone."""

    def __init__(self, sizes: Iterable[int]) -> None:
        self.sizes = sorted(sizes)
        self._last: dict[int, int | None] = {}

    def _fit(self, side: float) -> int | None:
        return next((s for s in self.sizes if side <= s * TOLERANCE), None)

    def choose(self, track_id: int, side: float) -> int | None:
        fit = self._fit(side)
        last = self._last.get(track_id, fit)
        if fit is not None and (last is None or fit < last) and self._fit(side * (1 + HYSTERESIS)) != fit:
            fit = last  # shrinking, but not clearly: stay on the larger input
        self._last[track_id] = fit
        return fit

    def forget(self, track_ids: Iterable[int]) -> None:
        for t in track_ids:
            self._last.pop(t, None)
