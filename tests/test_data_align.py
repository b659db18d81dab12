"""The engines' copy of the alignment template must frame faces exactly as the pipeline does."""

from __future__ import annotations

import numpy as np

from engines.data.align import ARCFACE_112, alignment_matrix, umeyama
from streamer.align import alignment_matrix as pipeline_matrix


def test_umeyama_recovers_a_known_similarity() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a, k, t = 0.3, 1.7, np.array([12.0, -4.0])
    rot = k * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = umeyama(src, src @ rot.T + t)
    np.testing.assert_allclose(m[:2, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:2, 2], t, atol=1e-9)


def test_engines_template_matches_the_pipeline_alignment() -> None:
    rng = np.random.default_rng(1)
    for size in (8, 16, 32, 64, 128):
        lm = ARCFACE_112 * rng.uniform(0.2, 4.0) + rng.normal(0, 2, (5, 2)) + rng.uniform(0, 500, 2)
        lm = lm.astype(np.float32)
        np.testing.assert_allclose(alignment_matrix(lm, size), pipeline_matrix(lm, size), atol=1e-4)
