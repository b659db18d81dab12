"""The engine interface every enhancer implements.

A batch of aligned uint8 BGR face crops (N, s, s, 3) goes in with the track id of each crop;
(N, s*scale, s*scale, 3) uint8 BGR comes out. Track ids let stateful engines (step 2's
latent interpolation across time) keep per-track state; `forget` drops it when a track dies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

INPUT_SIZE_FOR_SCALE = {2: 64, 4: 32, 8: 16, 16: 8}
"""The one table of shipped FSR factors: every factor makes a 128 px face, so the input crop
side follows from it. x4, x8 and x16 enter at step 1 (LR -> 64 px MR -> 128 px); x2 is step 2
alone (a face of ~64 px already is a mid-resolution face). Configuration, training and
benchmarks all read it from here."""
STEP1_SCALES = (4, 8, 16)
"""The factors that have a step 1 network."""


@runtime_checkable
class Enhancer(Protocol):
    name: str
    input_size: int
    scale: int

    @property
    def output_size(self) -> int: ...

    def enhance(self, crops: np.ndarray, track_ids: Sequence[int] | None = None) -> np.ndarray: ...

    def forget(self, track_ids: Sequence[int]) -> None: ...

    def close(self) -> None: ...


def check_batch(crops: np.ndarray, input_size: int) -> None:
    """Reject a malformed batch with a message that says what was expected."""
    if crops.ndim != 4 or crops.shape[1:] != (input_size, input_size, 3) or crops.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 crops of shape (N, {input_size}, {input_size}, 3), "
            f"got {crops.dtype} {crops.shape}"
        )
