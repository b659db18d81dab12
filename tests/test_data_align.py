"""The engines' alignment must frame faces exactly as InsightFace's ArcFace alignment does (the
template the models were trained with), computed without importing InsightFace."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from engines.data.align import ARCFACE_112, PAD, align_face, alignment_matrix


def test_the_template_matches_insightface_estimate_norm() -> None:
    face_align = pytest.importorskip("insightface.utils.face_align")
    rng = np.random.default_rng(1)
    for _ in range(100):
        lm = ARCFACE_112 * rng.uniform(0.2, 4.0) + rng.normal(0, 2, (5, 2)) + rng.uniform(0, 500, 2)
        lm = lm.astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            ref = face_align.estimate_norm(lm, image_size=128).astype(np.float64)
        for size in (8, 16, 32, 64, 128):
            s = size / 128.0 / (1.0 + 2.0 * PAD)
            expected = ref * s
            expected[:, 2] += size * PAD / (1.0 + 2.0 * PAD)
            np.testing.assert_allclose(alignment_matrix(lm, size), expected, atol=1e-3)


def test_degenerate_landmarks_give_a_finite_crop() -> None:
    image = np.full((64, 64, 3), 90, np.uint8)
    crop, m = align_face(image, np.full((5, 2), 30.0, np.float32), 16)
    assert np.isfinite(m).all() and crop.shape == (16, 16, 3)
