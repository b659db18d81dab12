"""The honest floor: bicubic upscaling plus a mild unsharp mask. Every FSR engine is compared
against it, and it is what runs when `--engine bicubic` is chosen."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from engines.base import check_batch


class BicubicEnhancer:
    name = "bicubic"

    def __init__(self, input_size: int = 16, scale: int = 8, sharpen: float = 0.5) -> None:
        self.input_size = input_size
        self.scale = scale
        self.sharpen = sharpen

    @property
    def output_size(self) -> int:
        return self.input_size * self.scale

    def enhance(self, crops: np.ndarray, track_ids: Sequence[int] | None = None) -> np.ndarray:
        check_batch(crops, self.input_size)
        size = (self.output_size, self.output_size)
        out = np.empty((len(crops), *size, 3), dtype=np.uint8)
        for i, crop in enumerate(crops):
            up = cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC)
            if self.sharpen > 0:
                blur = cv2.GaussianBlur(up, (0, 0), sigmaX=self.scale * 0.5)
                up = cv2.addWeighted(up, 1.0 + self.sharpen, blur, -self.sharpen, 0)
            out[i] = up
        return out

    def forget(self, track_ids: Sequence[int]) -> None:
        """Stateless: nothing to drop."""

    def close(self) -> None:
        """Holds no resources."""
