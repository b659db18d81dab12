import numpy as np

from engines.data.align import align_face, alignment_matrix
from streamer.align import inverse_matrix

# ArcFace's 112 px template landmarks, placed at 3x scale with an offset: a face ~300 px wide.
LMK = np.array(
    [[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]], np.float32
) * 3 + [
    100,
    50,
]


def test_landmarks_land_inside_the_crop_with_margin():
    size = 16
    m = alignment_matrix(LMK, size)
    pts = np.c_[LMK, np.ones(5)] @ m.T
    assert pts.min() > size * 0.15 and pts.max() < size * 0.85
    # Eyes level and left of right eye.
    assert abs(pts[0, 1] - pts[1, 1]) < 0.2 and pts[0, 0] < pts[1, 0]


def test_inverse_matrix_maps_enhanced_crop_back_onto_the_frame():
    rng = np.random.default_rng(0)
    frame = (rng.random((600, 600, 3)) * 255).astype(np.uint8)
    size, out, k = 32, 128, 2
    crop, m = align_face(frame, LMK, size)
    assert crop.shape == (size, size, 3)
    inv = inverse_matrix(m, size, out, frame_scale=k)
    # The centre of the enhanced crop goes where the crop centre came from, scaled by k.
    c_out = np.array([out / 2 - 0.5, out / 2 - 0.5, 1.0]) @ inv.T
    c_crop = np.array([size / 2 - 0.5, size / 2 - 0.5, 1.0])
    back = np.vstack([m, [0, 0, 1]])
    c_frame = np.linalg.solve(back, c_crop)[:2]
    np.testing.assert_allclose(c_out, (c_frame + 0.5) * k - 0.5, atol=1e-6)
    # Scale: one enhanced pixel spans k * size / out / s frame pixels, where s is the crop's zoom.
    s = np.sqrt(abs(np.linalg.det(m[:, :2])))
    assert np.isclose(np.sqrt(abs(np.linalg.det(inv[:, :2]))), k * size / out / s)
