"""What data preparation borrows from the application: a face detector.

Aligning a folder of faces or harvesting tiny faces from videos needs landmarks; the detector
that finds them lives in the application (streamer.detectors), which engines must not import.
So the preparation steps take a `FinderFactory` as an argument: run.py passes the real one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np


class Detected(Protocol):
    """One face: box (x1, y1, x2, y2), score, and 5 landmarks (5, 2) in image pixels."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray


class FaceFinder(Protocol):
    def detect(self, image: np.ndarray) -> Sequence[Detected]: ...


FinderFactory = Callable[[int, float], FaceFinder]
"""(detector input width in px, lowest score kept) -> a detector."""


def need_finder(finder: FinderFactory | None, what: str) -> FinderFactory:
    """The finder, or an error that says how to get one: preparation runs through `run.py train`."""
    if finder is None:
        raise FileNotFoundError(
            f"{what} is not prepared yet and preparing it needs the face detector: "
            "run `python run.py train prepare` first"
        )
    return finder
