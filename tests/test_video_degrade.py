"""The video-coded degradation: real libx264 clips of mosaic frames, faces cut back out with the
inverse of their pose, so the LR crop stays registered to its HR face."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.data.video_degrade import VideoSpec, load_pool, pool_path, video_degrade

pytest.importorskip("av", reason="the video path encodes with PyAV's libx264")


def _faces(n: int) -> np.ndarray:
    """Smooth synthetic 'faces': low-frequency brightness fields with a skin-like tint (faces
    carry little chroma, which 4:2:0 video halves), so registration errors show."""
    rng = np.random.default_rng(0)
    luma = rng.uniform(40, 220, (n, 6, 6, 1))
    small = np.clip(luma * np.array([1.0, 0.85, 0.75]) + rng.normal(0, 8, (n, 6, 6, 3)), 0, 255)
    return np.stack(
        [cv2.resize(s.astype(np.uint8), (128, 128), interpolation=cv2.INTER_CUBIC) for s in small]
    )


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.mark.parametrize("size", [8, 16, 32])
def test_crops_are_registered_degraded_and_reproducible(size: int) -> None:
    hr = _faces(20)
    lr = video_degrade(hr, size, np.random.default_rng(1))
    assert lr.shape == (20, 1, size, size, 3) and lr.dtype == np.uint8
    lr = lr[:, 0]
    area = np.stack([cv2.resize(h, (size, size), interpolation=cv2.INTER_AREA) for h in hr])
    m = max(1, size // 8)  # the borders are reflected context, not the face
    psnr = _psnr(lr[:, m:-m, m:-m], area[:, m:-m, m:-m])
    assert 20 < psnr < 45, psnr  # the same face, visibly degraded
    np.testing.assert_array_equal(lr, video_degrade(hr, size, np.random.default_rng(1))[:, 0])


def test_a_track_history_is_registered_to_its_newest_frame_but_not_a_copy() -> None:
    """Older frames (for multi-frame step 1) show the same face, within the aligner's jitter,
    with their own noise, motion and coding: information a copy of the newest would not add."""
    hr = _faces(20)
    lr = video_degrade(hr, 16, np.random.default_rng(1), keep=3)
    assert lr.shape == (20, 3, 16, 16, 3)
    area = np.stack([cv2.resize(h, (16, 16), interpolation=cv2.INTER_AREA) for h in hr])
    for k in range(3):
        assert _psnr(lr[:, k, 2:-2, 2:-2], area[:, 2:-2, 2:-2]) > 22, k
    assert _psnr(lr[:, 0], lr[:, 2]) < 45
    np.testing.assert_array_equal(lr[:, -1], video_degrade(hr, 16, np.random.default_rng(1), keep=3)[:, -1])


def test_a_misregistered_crop_would_be_caught() -> None:
    """The control for the PSNR bound above: the same faces shifted by one LR pixel fall below it."""
    hr = _faces(20)
    area = np.stack([cv2.resize(h, (16, 16), interpolation=cv2.INTER_AREA) for h in hr])
    shifted = np.roll(area, 1, axis=2)
    lr = video_degrade(hr, 16, np.random.default_rng(1), VideoSpec(crf=(18, 18)))[:, 0]
    assert (
        _psnr(lr[:, 2:-2, 2:-2], area[:, 2:-2, 2:-2]) > _psnr(shifted[:, 2:-2, 2:-2], area[:, 2:-2, 2:-2]) + 3
    )


def test_pool_is_cached_and_rebuilt_for_other_faces(tmp_path: Path) -> None:
    hr = _faces(10)
    pool = load_pool(hr, 16, tmp_path, "t", frames=3)
    assert pool.shape == (1, 10, 3, 16, 16, 3)
    assert pool_path(tmp_path, "t", 16, 3).exists()
    np.testing.assert_array_equal(load_pool(hr, 16, tmp_path, "t", frames=3), pool)
    assert load_pool(hr[:4], 16, tmp_path, "t", frames=3).shape == (1, 4, 3, 16, 16, 3)
