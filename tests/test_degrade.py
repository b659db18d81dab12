"""The synthetic degradation pipeline, with real H.264 (libx264 through PyAV) and JPEG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.data import degrade as D
from streamer.detectors import face_finder

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _faces(n: int = 6, size: int = 128) -> np.ndarray:
    """Smooth, structured test images (gradients and discs), not noise: codecs behave as on faces."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for i in range(n):
        img = np.stack([xx * 200 + 20 * i, yy * 180 + 10, (xx + yy) * 100 + 30], axis=2)
        cv2.circle(img, (size // 2 + 3 * i, size // 2), size // 5, (240, 200, 160), -1)
        cv2.circle(img, (size // 3, size // 3), size // 16, (20, 20, 20), -1)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_realistic_degradation_sizes_with_real_h264(size: int) -> None:
    assert D.have_pyav()
    hr = _faces()
    lr = D.degrade(hr, size, np.random.default_rng(0), D.REALISTIC)
    assert lr.shape == (len(hr), size, size, 3) and lr.dtype == np.uint8
    clean = np.stack([cv2.resize(h, (size, size), interpolation=cv2.INTER_AREA) for h in hr])
    err = np.abs(lr.astype(np.float32) - clean).mean()
    assert 0.5 < err < 30.0  # degraded, yet still the same picture


def test_h264_roundtrip_is_real_lossy_and_deterministic() -> None:
    crops = D.degrade(_faces(9), 16, np.random.default_rng(1), D.DegradeSpec(h264_p=0.0, jpeg_p=0.0))
    low = D.h264_roundtrip(crops, crf=18)
    high = D.h264_roundtrip(crops, crf=45)
    assert low.shape == crops.shape
    np.testing.assert_array_equal(low, D.h264_roundtrip(crops, crf=18))
    err_low = np.abs(low.astype(np.float32) - crops).mean()
    err_high = np.abs(high.astype(np.float32) - crops).mean()
    assert 0.0 < err_low < err_high


def test_same_seed_same_degradation() -> None:
    hr = _faces(4)
    a = D.degrade(hr, 16, np.random.default_rng(7))
    b = D.degrade(hr, 16, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="smaller"):
        D.degrade(hr, 128, np.random.default_rng(0))


def test_kernel_is_normalised_and_anisotropic_when_asked() -> None:
    k = D.gaussian_kernel(np.random.default_rng(0), (0.5, 1.5), 1.0, scale=4.0)
    assert abs(float(k.sum()) - 1.0) < 1e-5
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1


def test_without_pyav_jpeg_stands_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "_PYAV", False)
    lr = D.degrade(_faces(3), 16, np.random.default_rng(0), D.REALISTIC)
    assert lr.shape == (3, 16, 16, 3)


@pytest.mark.shared
def test_harvest_real_tiny_faces_from_a_video(tmp_path: Path) -> None:
    clip = SHARED / "data" / "videos" / "face_recognition__short_hamilton_clip.mp4"
    if not clip.exists():
        pytest.skip(f"needs {clip} (../shared data)")
    from engines.data.harvest import harvest

    faces = harvest([str(clip)], sizes=(8, 16), every=30, max_frames=3, progress=False, finder=face_finder)
    assert faces[16].shape[1:] == (16, 16, 3) and len(faces[16]) == len(faces[8]) >= 1
    assert faces[16].std() > 5  # a picture, not a blank
