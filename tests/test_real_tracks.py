"""Real track histories harvested from real footage with the real detector and libx264: the
newest LR crop is registered with its MR target as an area downscale is, and the older crops are
the same face in other frames (it moved and talked), not copies."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.data.harvest import video_files
from engines.data.real_tracks import MR_SIZE, harvest_tracks, load_real_tracks

pytest.importorskip("av", reason="the clips are decoded and coded with PyAV")

CLIP = "face_recognition__short_hamilton_clip.mp4"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def _area(mr: np.ndarray, size: int) -> np.ndarray:
    return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA) for m in mr])


def test_histories_from_a_real_clip_are_registered_and_really_move(shared_dir: Path) -> None:
    from streamer.detectors import face_finder

    clip = shared_dir / "data" / "videos" / CLIP
    got = harvest_tracks([str(clip)], 16, face_finder, frames=3, max_frames=60)
    assert got.clips == 1 and got.lr.shape[1:] == (3, 16, 16, 3) and got.mr.shape[1:] == (MR_SIZE, MR_SIZE, 3)
    assert len(got.lr) >= 10
    target = _area(got.mr, 16)
    newest = np.mean([_psnr(a, b) for a, b in zip(got.lr[:, -1], target, strict=True)])
    shifted = np.mean([_psnr(a, b) for a, b in zip(got.lr[:, -1], np.roll(target, 1, axis=2), strict=True)])
    oldest = np.mean([_psnr(a, b) for a, b in zip(got.lr[:, 0], target, strict=True)])
    assert newest > 24.0 and newest > shifted + 2.0, (newest, shifted)
    assert oldest < newest - 0.5, (oldest, newest)  # another frame of the face, not the same crop
    assert not np.array_equal(got.lr[:, 0], got.lr[:, -1])
    # RGB like every training array: the clip's stage light makes faces redder than blue.
    assert got.mr[..., 0].mean() > got.mr[..., 2].mean()


def test_the_video_benchmarks_clips_are_never_harvested(shared_dir: Path, tmp_path: Path) -> None:
    videos = shared_dir / "data" / "videos"
    assert all("/talking/" not in f for f in video_files(videos))
    np.savez(
        tmp_path / "real_tracks_16_k5.npz",
        lr=np.zeros((2, 5, 16, 16, 3), np.uint8),
        mr=np.zeros((2, 64, 64, 3), np.uint8),
        clips=np.array(1),
    )
    assert load_real_tracks(tmp_path, 16).lr.shape == (2, 5, 16, 16, 3)  # the cache, no detector
    with pytest.raises(FileNotFoundError, match="train prepare"):
        load_real_tracks(tmp_path, 32)
