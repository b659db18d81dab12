"""Plain data shared by the pipeline stages.

Data flows one way: source -> detect/track -> crop -> enhance -> composite -> sink. Each stage
takes and returns these dataclasses and numpy arrays; nothing is shared through globals.
Images are always uint8 BGR, shape (H, W, 3), the OpenCV convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Frame:
    """One decoded picture from a source.

    `pts` is the presentation time in seconds from the source's start (keeps output timing
    identical to the input); `capture_time` is `time.monotonic()` when the frame was produced,
    used to measure latency end to end.
    """

    image: np.ndarray
    index: int
    pts: float
    capture_time: float


@dataclass
class Detection:
    """A face found by a detector, in frame pixel coordinates.

    box: (4,) float32 x1, y1, x2, y2. landmarks: (5, 2) float32 in the InsightFace order
    (left eye, right eye, nose, left mouth corner, right mouth corner, as seen in the image).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray


@dataclass
class Track:
    """A face followed across frames; boxes and landmarks are the smoothed estimates."""

    track_id: int
    box: np.ndarray
    landmarks: np.ndarray
    score: float
    age: int = 0
    hits: int = 0
    misses: int = 0


@dataclass
class FaceCrop:
    """An aligned face crop and the transform that produced it.

    `matrix` is the 2x3 affine mapping frame pixels to crop pixels (crop is `size` x `size`).
    """

    track_id: int
    image: np.ndarray
    matrix: np.ndarray
    size: int


@dataclass
class EnhancedFace:
    """An enhanced crop (`image`, side = crop size x engine scale) ready to composite."""

    track_id: int
    image: np.ndarray
    crop: FaceCrop


@dataclass
class StageTimes:
    """Seconds spent in each stage for one frame, keyed by stage name."""

    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class FrameResult:
    """What the pipeline produces for one source frame; sinks and the server consume it.

    `started` is `time.monotonic()` when processing began: capture -> started is the time the
    frame waited for the pipeline."""

    frame: Frame
    output: np.ndarray
    tracks: list[Track]
    faces: list[EnhancedFace]
    times: StageTimes
    started: float
