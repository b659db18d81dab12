import cv2
import numpy as np

from engines.data.align import align_face
from streamer.composite import (
    Gallery,
    compose_gallery,
    compose_inset,
    compose_upscale,
    feather_mask,
    output_size,
)
from streamer.types import EnhancedFace, FaceCrop

LMK = np.array(
    [[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]], np.float32
) * 0.5 + [
    60,
    40,
]


def _frame() -> np.ndarray:
    y, x = np.mgrid[0:180, 0:320]
    img = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 3)


def _face(frame: np.ndarray, size: int = 16, out: int = 128) -> EnhancedFace:
    crop, m = align_face(frame, LMK, size)
    enhanced = cv2.resize(crop, (out, out), interpolation=cv2.INTER_CUBIC)
    return EnhancedFace(track_id=3, image=enhanced, crop=FaceCrop(3, crop, m, size))


def test_feather_mask_is_one_inside_and_fades_to_the_edge():
    m = feather_mask(64, 0.2)
    assert m[32, 32] == 1.0
    assert m[0, 0] < 0.01 and m[0, 32] < 0.1
    assert np.all(np.diff(m[32, :13]) > 0)


def test_upscale_paste_of_a_faithful_face_leaves_no_seam():
    frame = _frame()
    face = _face(frame)
    k = 2
    plain = cv2.resize(frame, (frame.shape[1] * k, frame.shape[0] * k), interpolation=cv2.INTER_LINEAR)
    out = compose_upscale(frame, [face], k, feather=0.2)
    assert out.shape == (360, 640, 3)
    # The pasted face is a bicubic upscale of the same pixels, so it must match the plain upscale
    # closely: a misplaced warp (off by a pixel or a scale) would show up as a large error.
    diff = np.abs(out.astype(int) - plain.astype(int))
    assert diff.mean() < 1.0 and diff.max() < 40


def test_upscale_paste_changes_the_face_region_only():
    frame = _frame()
    face = _face(frame)
    face.image[:] = 255
    out = compose_upscale(frame, [face], 2, feather=0.2)
    plain = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_LINEAR)
    changed = np.abs(out.astype(int) - plain.astype(int)).sum(-1) > 30
    ys, xs = np.nonzero(changed)
    cx, cy = LMK[:, 0].mean() * 2, LMK[:, 1].mean() * 2
    assert abs(xs.mean() - cx) < 12 and abs(ys.mean() - cy) < 16
    assert changed.sum() < 0.2 * changed.size


def test_inset_and_gallery_show_the_enhanced_face():
    frame = _frame()
    face = _face(frame)
    face.image[:] = (0, 0, 255)
    inset = compose_inset(frame, [face], 0.2)
    assert inset.shape == frame.shape
    red = (inset[..., 2] > 250) & (inset[..., 0] < 5)
    assert red.sum() >= 0.8 * min(96, 180 // 3) ** 2
    g = Gallery()
    g.update([face])
    out = compose_gallery(frame, g)
    assert out.shape[:2] == (180, output_size(320, 180, "gallery", 1)[0])
    strip = out[:, 320:]
    assert ((strip[..., 2] > 250) & (strip[..., 0] < 5)).sum() >= 0.9 * 128 * 128
    g.forget([3])
    assert not (compose_gallery(frame, g)[:, 320:, 2] > 250).any()


def test_insets_cover_no_face_and_no_other_inset():
    frame = np.full((360, 640, 3), 90, np.uint8)
    faces = []
    for i, (x, y) in enumerate([(200, 150), (226, 150), (252, 152), (214, 180)]):
        lmk = LMK - LMK.mean(0) + (x, y)
        crop, m = align_face(frame, lmk, 16)
        faces.append(EnhancedFace(i, np.full((128, 128, 3), 250, np.uint8), FaceCrop(i, crop, m, 16)))
    out = compose_inset(frame, faces, 0.2)
    bright = (out[..., 0] > 240).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(bright)
    tiles = [s for s in stats[1:] if s[cv2.CC_STAT_AREA] > 1000]
    assert len(tiles) == 4, "every face gets its own separate inset"
    for x, y in [(200, 150), (226, 150), (252, 152), (214, 180)]:
        assert out[y, x, 0] == 90, "an inset covers a face"
