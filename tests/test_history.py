"""Multi-frame step 1 at run time: each track's last crops, registered by the aligner, fused."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from engines.fsr import load_two_step
from engines.history import RESET_ABOVE, TrackHistory
from tests.tiny_fsr import make_weights


def _crops(n: int, seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(90, 140, (n, size, size, 3), dtype=np.uint8)


def test_a_young_track_repeats_its_oldest_crop_and_windows_slide() -> None:
    h = TrackHistory(3)
    a, b, c, d = (_crops(1, s) for s in range(4))
    np.testing.assert_array_equal(h.push(a, [7])[0], np.concatenate([a, a, a]))
    np.testing.assert_array_equal(h.push(b, [7])[0], np.concatenate([a, a, b]))
    np.testing.assert_array_equal(h.push(c, [7])[0], np.concatenate([a, b, c]))
    np.testing.assert_array_equal(h.push(d, [7])[0], np.concatenate([b, c, d]))


def test_tracks_are_kept_apart_forgotten_and_reset_on_a_jump() -> None:
    h = TrackHistory(3)
    a, b = _crops(1, 0), _crops(1, 1)
    h.push(np.concatenate([a, b]), [1, 2])
    w = h.push(np.concatenate([b, a]), [1, 2])
    np.testing.assert_array_equal(w[0], np.concatenate([a, a, b]))
    np.testing.assert_array_equal(w[1], np.concatenate([b, b, a]))
    h.forget([1])
    np.testing.assert_array_equal(h.push(a, [1])[0], np.concatenate([a, a, a]))
    other = np.clip(a.astype(int) + int(RESET_ABOVE) + 30, 0, 255).astype(np.uint8)  # another face
    np.testing.assert_array_equal(h.push(other, [1])[0], np.concatenate([other, other, other]))
    no_ids = h.push(np.concatenate([a, b]), None)
    np.testing.assert_array_equal(no_ids[1], np.concatenate([b, b, b]))


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_weights(tmp_path_factory.mktemp("w"), scales=(4, 8), multi_frame={8: 3})


def test_the_engine_fuses_a_tracks_frames(weights: Path) -> None:
    """The same newest crop comes out differently after different pasts (the older frames are
    used), and a forgotten track starts over."""
    eng = load_two_step(8, "fast", "onnxruntime", weights_dir=weights, frames=3, temporal=0.0)
    assert eng.history is not None and eng.name.startswith("fsr-x8-fast-k3/")
    a, b, now = _crops(1, 0), _crops(1, 1), _crops(1, 2)
    fresh = eng.enhance(now, [1])
    eng.enhance(np.concatenate([a, b]), [2, 3])
    after = eng.enhance(np.concatenate([now, now]), [2, 3])
    assert not np.array_equal(after[0], after[1])
    assert not np.array_equal(after[0], fresh[0])
    eng.forget([2])
    np.testing.assert_array_equal(eng.enhance(now, [2])[0], fresh[0])
    assert eng.enhance(now, None).shape == (1, 128, 128, 3)


def test_a_factor_without_a_multi_frame_model_stays_single_frame(
    weights: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="engines.fsr"):
        eng = load_two_step(4, "fast", "onnxruntime", weights_dir=weights, frames=3)
    assert eng.history is None and "no 3-frame step 1 for x4" in caplog.text
    assert eng.enhance(_crops(2, 0, 32), [1, 2]).shape == (2, 128, 128, 3)
