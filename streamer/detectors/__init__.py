"""Detector backends, and `build_detector`, which picks one and imports it only when chosen."""

from __future__ import annotations

from pathlib import Path

from streamer.config import DetectConfig
from streamer.detectors.base import ACCEPTED, DetectorError, FaceDetector


def build_detector(cfg: DetectConfig) -> FaceDetector:
    """The detector named by `cfg.detector`; never downloads anything.

    Raises DetectorError when the name is neither the embedded default nor an existing
    file or folder, listing what is accepted.
    """
    name = cfg.detector.strip()
    if name.lower() == "centerface":
        from streamer.detectors.centerface import CenterFaceDetector

        return CenterFaceDetector(cfg)
    if name.lower() == "centerface-int8":
        from streamer.detectors.centerface_int8 import CenterFaceInt8Detector

        return CenterFaceInt8Detector(cfg)
    path = Path(name).expanduser()
    if not path.exists():
        raise DetectorError(f"detector {name!r} not found; use {ACCEPTED}")
    from streamer.detectors.insightface_det import load_onnx_detector

    return load_onnx_detector(path, cfg)


def face_finder(input_width: int, threshold: float) -> FaceDetector:
    """The detector at a given input width and score, for the engines' data preparation
    (an `engines.data.finder.FinderFactory`)."""
    return build_detector(DetectConfig(input_width=input_width, threshold=threshold))
