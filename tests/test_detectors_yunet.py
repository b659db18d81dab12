"""YuNet through OpenCV's FaceDetectorYN (streamer/detectors/yunet.py), on the ONNX exports in
../shared/data/models/yunet_libfacedetection_train (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_detect import SHARED, T1, assert_plausible_faces

from streamer.config import DetectConfig
from streamer.detectors import build_detector
from streamer.detectors.base import DetectorError
from streamer.detectors.yunet import YuNetDetector

YUNET_DIR = SHARED / "data" / "models" / "yunet_libfacedetection_train"
YUNET_FILES = [YUNET_DIR / f"{n}.onnx" for n in ("yunet_s_dynamic", "yunet_n_dynamic", "yunet_s_640_640")]
pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(
        not YUNET_DIR.is_dir(), reason="../shared/data/models/yunet_libfacedetection_train absent"
    ),
]


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    image = cv2.imread(str(T1))
    assert image is not None
    return image


@pytest.mark.parametrize("path", YUNET_FILES, ids=lambda p: p.stem)
def test_yunet_onnx_is_routed_to_opencv_and_finds_the_six_faces_of_t1(path: Path, t1: np.ndarray) -> None:
    """Dynamic and fixed 640x640 exports alike; landmarks in InsightFace's order, which alignment needs."""
    det = build_detector(DetectConfig(detector=str(path)))
    assert isinstance(det, YuNetDetector) and det.name == f"yunet:{path.stem}"
    dets = det.detect(t1)
    assert len(dets) == 6, [d.score for d in dets]
    assert_plausible_faces(dets, t1.shape)
    scores = [d.score for d in dets]
    assert scores == sorted(scores, reverse=True) and min(scores) >= DetectConfig().threshold
    capped = build_detector(DetectConfig(detector=str(path), max_faces=3)).detect(t1)
    assert [d.score for d in capped] == scores[:3]


def test_boxes_are_in_the_frame_given_whatever_the_network_width(t1: np.ndarray) -> None:
    path = str(YUNET_FILES[0])
    full = build_detector(DetectConfig(detector=path, input_width=1280)).detect(t1)
    half_image = cv2.resize(t1, (t1.shape[1] // 2, t1.shape[0] // 2), interpolation=cv2.INTER_AREA)
    det = build_detector(DetectConfig(detector=path, input_width=1280))
    half = det.detect(half_image, width=1280)  # enlarged to the network width, boxes mapped back
    assert len(half) == len(full) == 6
    a = np.array(sorted(d.box[0] for d in full))
    b = np.array(sorted(d.box[0] for d in half))
    assert np.allclose(b * 2, a, atol=6), (a, b)
    assert_plausible_faces(half, half_image.shape)
    narrow = det.detect(t1, width=320)  # another network size on the same instance, same coordinates
    assert len(narrow) >= 4 and max(d.box[2] for d in narrow) > 640, [d.box for d in narrow]


def test_no_faces_and_bad_frames(t1: np.ndarray) -> None:
    det = build_detector(DetectConfig(detector=str(YUNET_FILES[0])))
    assert det.detect(np.full((360, 640, 3), 127, np.uint8)) == []
    with pytest.raises(DetectorError, match="uint8 BGR"):
        det.detect(t1.astype(np.float32))
    with pytest.raises(DetectorError, match="too small"):
        det.detect(np.zeros((1, 5, 3), np.uint8))


def test_yunet_in_the_detection_stage_finds_the_demo_faces() -> None:
    """The regions scan hands the detector enlarged regions of many sizes (`detect_many` with a
    width); YuNet follows them and the stage finds the demo's 11-23 px faces."""
    from benchmarks.detection import demo_stage

    cfg = DetectConfig(detector=str(YUNET_FILES[1]), max_faces=100_000, min_face_px=0.0)
    out = demo_stage(build_detector(cfg), cfg, 31)
    assert out["recall"] > 0.5, out
    assert out["cpu_ms_per_frame"] > 0, out
