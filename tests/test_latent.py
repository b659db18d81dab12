"""Latent interpolation maths of step 2 (engines/latent.py)."""

from __future__ import annotations

import numpy as np
import pytest

from engines.latent import TemporalLatent, toward_mean

SHAPE = (4, 8, 8)


def _z(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


def test_toward_mean_endpoints_and_midpoint() -> None:
    z, mean = _z(0), _z(1)
    np.testing.assert_array_equal(toward_mean(z, mean, 0.0), z)
    np.testing.assert_allclose(toward_mean(z, mean, 1.0), mean, atol=1e-6)
    np.testing.assert_allclose(toward_mean(z, mean, 0.25), 0.75 * z + 0.25 * mean, atol=1e-6)


def test_toward_mean_broadcasts_over_batch_and_checks_input() -> None:
    batch, mean = np.stack([_z(2), _z(3)]), _z(4)
    out = toward_mean(batch, mean, 0.5)
    assert out.shape == batch.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[1], 0.5 * (batch[1] + mean), atol=1e-6)
    with pytest.raises(ValueError, match="strength"):
        toward_mean(batch, mean, 1.5)
    with pytest.raises(ValueError, match="shape"):
        toward_mean(batch, np.zeros((3, 8, 8), np.float32), 0.5)


def test_exponential_smoothing_follows_recursion_per_track() -> None:
    tl = TemporalLatent("exponential", alpha=0.6)
    a0, a1, b0 = _z(5), _z(6), _z(7)
    np.testing.assert_array_equal(tl.update(1, a0), a0)
    np.testing.assert_array_equal(tl.update(2, b0), b0)
    np.testing.assert_allclose(tl.update(1, a1), 0.6 * a0 + 0.4 * a1, atol=1e-6)
    assert len(tl) == 2
    tl.forget([1, 99])
    assert len(tl) == 1
    np.testing.assert_array_equal(tl.update(1, a1), a1)


def test_window_mode_averages_last_frames() -> None:
    tl = TemporalLatent("window", window=2)
    zs = [_z(i) for i in range(3)]
    tl.update("t", zs[0])
    tl.update("t", zs[1])
    np.testing.assert_allclose(tl.update("t", zs[2]), (zs[1] + zs[2]) / 2, atol=1e-6)


def test_smoothing_reduces_frame_to_frame_change() -> None:
    rng = np.random.default_rng(0)
    base = _z(10)
    frames = [base + 0.3 * rng.standard_normal(SHAPE).astype(np.float32) for _ in range(40)]
    for tl in (TemporalLatent("exponential", alpha=0.7), TemporalLatent("window", window=5)):
        smooth = [tl.update(0, f) for f in frames]
        raw_change = np.mean([np.abs(b - a).mean() for a, b in zip(frames, frames[1:], strict=False)])
        smooth_change = np.mean([np.abs(b - a).mean() for a, b in zip(smooth, smooth[1:], strict=False)])
        assert smooth_change < 0.6 * raw_change


def test_batch_update_bounds_and_errors() -> None:
    tl = TemporalLatent("exponential", alpha=0.5, max_tracks=2)
    out = tl.update_batch([1, 2, 3], np.stack([_z(1), _z(2), _z(3)]))
    assert out.shape == (3, *SHAPE)
    assert len(tl) == 2
    with pytest.raises(ValueError, match="once"):
        tl.update_batch([4, 4], np.stack([_z(1), _z(2)]))
    with pytest.raises(ValueError, match="shape changed"):
        tl.update(3, np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="mode"):
        TemporalLatent("median")
    with pytest.raises(ValueError, match="alpha"):
        TemporalLatent(alpha=1.0)


def test_interpolate_code_leaves_the_mr_channels_alone() -> None:
    """A residual prior's latent is [code | MR pixels]: only the code moves toward the mean and
    is smoothed across a track's frames."""
    from engines.latent import interpolate_code

    rng = np.random.default_rng(0)
    mean = rng.standard_normal((4, 8, 8)).astype(np.float32)
    z1, z2 = rng.standard_normal((2, 1, 12, 8, 8)).astype(np.float32)
    out = interpolate_code(z1, mean, 0.5)
    np.testing.assert_allclose(out[:, :4], 0.5 * z1[:, :4] + 0.5 * mean, atol=1e-6)
    np.testing.assert_array_equal(out[:, 4:], z1[:, 4:])
    tl = TemporalLatent("exponential", alpha=0.5)
    interpolate_code(z1, mean, 0.0, tl, [7])
    second = interpolate_code(z2, mean, 0.0, tl, [7])
    np.testing.assert_allclose(second[:, :4], 0.5 * z1[:, :4] + 0.5 * z2[:, :4], atol=1e-6)
    np.testing.assert_array_equal(second[:, 4:], z2[:, 4:])
    full = interpolate_code(z1[:, :4], mean, 1.0)  # an older prior: the mean covers everything
    np.testing.assert_allclose(full, mean[None], atol=1e-6)
    with pytest.raises(ValueError, match="mean"):
        interpolate_code(z1, np.zeros((4, 4, 4), np.float32), 0.5)
