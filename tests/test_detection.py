import numpy as np

from streamer.detection import carry_forward
from streamer.types import Detection


def _textured(shape=(240, 320)) -> np.ndarray:
    rng = np.random.default_rng(1)
    import cv2

    return cv2.GaussianBlur((rng.random(shape) * 255).astype(np.uint8), (0, 0), 1.5)


def test_late_detections_are_moved_to_where_the_face_is_now():
    then = _textured()
    now = np.roll(then, (3, -7), axis=(0, 1))  # the camera panned: content moved 7 px left, 3 down
    lmk = np.array([[100, 100], [112, 100], [106, 106], [101, 112], [111, 112]], np.float32)
    det = Detection(box=np.array([96, 94, 116, 118], np.float32), score=0.9, landmarks=lmk)
    (moved,) = carry_forward([det], then, now)
    np.testing.assert_allclose(moved.box, det.box + [-7, 3, -7, 3], atol=0.5)
    np.testing.assert_allclose(moved.landmarks, lmk + [-7, 3], atol=0.5)


def test_lost_faces_are_kept_or_dropped_as_asked():
    then = _textured()
    # A face that has left the picture: its points lie outside the image, so flow loses them all.
    det = Detection(
        box=np.array([-400, -400, -380, -380], np.float32),
        score=0.9,
        landmarks=np.full((5, 2), -390, np.float32),
    )
    kept = carry_forward([det], then, then, keep_lost=True)
    assert len(kept) == 1 and np.array_equal(kept[0].box, det.box)
    assert carry_forward([det], then, then, keep_lost=False) == []
    assert carry_forward([], then, then) == []
