"""The degradation the live pipeline really applies: faces in a whole frame that a camera
downscaled and a video encoder compressed over time, then cropped with the pipeline's alignment.

HR aligned faces are placed into mosaic frames at the LR scale, each with its own similarity
pose (scale, rotation, sub-pixel offset) and optical blur; a short clip is made in which every
face drifts by a sub-pixel motion per frame and the sensor noise is fresh each frame; the clip
is encoded with libx264 (real motion-compensated P-frames, CRF sampled per clip), decoded, and
each face is cut from the last decoded frame by warping it back with the inverse of its pose,
as the aligner crops a face out of a decoded frame. Macroblocks, chroma subsampling and the
resampling after compression therefore sit where they sit in production, not on a grid aligned
with the face.

Too slow to run per training step on shared CPUs, so `load_pool` builds a pool of LR crops per
LR size once (aligned with the HR array's rows) and caches it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.data.degrade import h264_clip

log = logging.getLogger(__name__)

HR_SIZE = 128
AREA_SIGMA = 0.45
"""The Gaussian closest to a 1-pixel box (the sensor's area sampling), in LR pixels."""


@dataclass(frozen=True)
class VideoSpec:
    """Ranges sampled per face (pose, blur, motion) or per clip (CRF, noise)."""

    context: float = 1.5
    """Side of a face's mosaic cell over the LR crop side: background around each face."""
    grid: int = 12
    frames: int = 6
    crf: tuple[int, int] = (20, 32)
    blur_sigma: tuple[float, float] = (0.2, 0.7)
    """Optical blur in LR pixels, on top of the sensor's own pixel-area filter (`AREA_SIGMA`)."""
    noise_sigma: tuple[float, float] = (1.0, 4.0)
    scale_jitter: float = 0.06
    rotation_deg: float = 8.0
    motion: float = 0.6
    """Largest per-frame drift of a face, in LR pixels."""
    align_shift: float = 0.25
    align_rotation_deg: float = 1.0
    align_scale: float = 0.015
    """Standard deviations of the aligner's error on the older frames of a track (LR pixels,
    degrees, relative scale): landmarks of a 16 px face are off by about a quarter pixel."""


DEFAULT = VideoSpec()


def _pose(rng: np.random.Generator, s: int, cell: int, spec: VideoSpec) -> np.ndarray:
    """2x3 map from the 128 px aligned crop into its cell (cell pixels), centred, posed."""
    k = s / HR_SIZE * (1.0 + rng.uniform(-spec.scale_jitter, spec.scale_jitter))
    a = math.radians(rng.uniform(-spec.rotation_deg, spec.rotation_deg))
    c, si = k * math.cos(a), k * math.sin(a)
    centre_in = (HR_SIZE - 1) / 2.0
    centre_out = (cell - 1) / 2.0 + rng.uniform(-0.5, 0.5, 2)
    rot = np.array([[c, -si], [si, c]])
    t = centre_out - rot @ np.array([centre_in, centre_in])
    return np.hstack([rot, t[:, None]])


def _crop_map(pose: np.ndarray, size: int) -> np.ndarray:
    """The aligner's crop of a posed face: the pose back to the template, at the LR size."""
    to_crop = cv2.invertAffineTransform(pose) * (size / HR_SIZE)
    to_crop[:, 2] += 0.5 * (size / HR_SIZE) - 0.5
    return to_crop


def _drift(pose: np.ndarray, shift: np.ndarray) -> np.ndarray:
    out = pose.copy()
    out[:, 2] += shift
    return out


def _jitter(pose: np.ndarray, rng: np.random.Generator, spec: VideoSpec) -> np.ndarray:
    """`pose` as a landmark detector would estimate it: off by a small similarity about the
    face's centre."""
    a = math.radians(rng.normal(0.0, spec.align_rotation_deg))
    k = 1.0 + rng.normal(0.0, spec.align_scale)
    rot = k * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = pose @ np.array([(HR_SIZE - 1) / 2.0, (HR_SIZE - 1) / 2.0, 1.0])
    shift = centre - rot @ centre + rng.normal(0.0, spec.align_shift, 2)
    return np.hstack([rot @ pose[:, :2], (rot @ pose[:, 2] + shift)[:, None]])


def jitter_faces(
    hr: np.ndarray, size: int, rng: np.random.Generator, spec: VideoSpec = DEFAULT
) -> np.ndarray:
    """HR aligned faces (N, 128, 128, 3) re-cut with the aligner's error of an `size` px crop
    (the `align_*` deviations, in LR pixels): the older frames of a synthetic track."""
    k = HR_SIZE / size
    unit = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = np.empty_like(hr)
    for i, face in enumerate(hr):
        m = _jitter(unit / k, rng, spec) * k
        out[i] = cv2.warpAffine(
            face, m, (HR_SIZE, HR_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    return out


def video_degrade(
    hr: np.ndarray, size: int, rng: np.random.Generator, spec: VideoSpec = DEFAULT, keep: int = 1
) -> np.ndarray:
    """HR RGB uint8 aligned faces (N, 128, 128, 3) -> LR crops (N, keep, size, size, 3) through
    one mosaic clip per `spec.grid`^2 faces: the face in each of the clip's last `keep` decoded
    frames, newest last, each cut with its own frame's pose. The newest is cut exactly (it
    defines the target); older ones with the aligner's jitter (`align_*`), as a track's history
    is registered to its newest frame only through landmarks."""
    if hr.shape[1:] != (HR_SIZE, HR_SIZE, 3):
        raise ValueError(f"expected (N, {HR_SIZE}, {HR_SIZE}, 3) faces, got {hr.shape}")
    if not 1 <= keep <= spec.frames:
        raise ValueError(f"keep must be in 1..{spec.frames}, got {keep}")
    cell = int(math.ceil(size * spec.context / 2.0) * 2)
    per_clip = spec.grid * spec.grid
    out = np.empty((len(hr), keep, size, size, 3), np.uint8)
    for start in range(0, len(hr), per_clip):
        faces = hr[start : start + per_clip]
        cols = min(spec.grid, len(faces))
        rows = int(math.ceil(len(faces) / cols))
        w, h = max(16, cols * cell), max(16, rows * cell)
        poses = [_pose(rng, size, cell, spec) for _ in faces]
        motion = rng.uniform(-spec.motion, spec.motion, (len(faces), 2))
        blurred = []
        for f in faces:
            sigma = math.hypot(AREA_SIGMA, rng.uniform(*spec.blur_sigma)) * HR_SIZE / size
            blurred.append(cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT))
        noise = rng.uniform(*spec.noise_sigma)

        # Pose of each face in each frame: the last frame holds the faces at their poses.
        posed = [
            [_drift(poses[i], motion[i] * (spec.frames - 1 - t)) for i in range(len(faces))]
            for t in range(spec.frames)
        ]
        clip = []
        for t in range(spec.frames):
            frame = np.zeros((h, w, 3), np.uint8)
            for i, f in enumerate(blurred):
                r, c = divmod(i, cols)
                frame[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = cv2.warpAffine(
                    f, posed[t][i], (cell, cell), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
                )
            noisy = frame.astype(np.float32) + rng.standard_normal(frame.shape).astype(np.float32) * noise
            clip.append(np.clip(noisy, 0, 255).round().astype(np.uint8))
        decoded = h264_clip(clip, int(rng.integers(spec.crf[0], spec.crf[1] + 1)))
        for j, t in enumerate(range(spec.frames - keep, spec.frames)):
            for i in range(len(faces)):
                r, c = divmod(i, cols)
                tile = decoded[t][r * cell : (r + 1) * cell, c * cell : (c + 1) * cell]
                pose = posed[t][i] if t == spec.frames - 1 else _jitter(posed[t][i], rng, spec)
                out[start + i, j] = cv2.warpAffine(
                    tile,
                    _crop_map(pose, size),
                    (size, size),
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT,
                )
    return out


POOL_FRAMES = 5
"""Frames per face in a cached pool: the most a multi-frame step 1 fuses; single-frame training
reads the newest."""


def pool_path(cache_dir: Path, tag: str, size: int, frames: int = POOL_FRAMES) -> Path:
    return cache_dir / f"video_lr_{tag}_{size}_k{frames}.npz"


def load_pool(
    hr: np.ndarray,
    size: int,
    cache_dir: Path,
    tag: str,
    variants: int = 1,
    seed: int = 0,
    frames: int = POOL_FRAMES,
) -> np.ndarray:
    """(variants, N, frames, size, size, 3) video-degraded LR crops of `hr` (row i of each variant
    is face i, its frames newest last), built once and cached as
    cache_dir/video_lr_<tag>_<size>_k<frames>.npz. `tag` names the HR array (dataset and split)
    so a different face set never reads a stale pool."""
    path = pool_path(cache_dir, tag, size, frames)
    if path.exists():
        with np.load(path) as z:
            pool = z["lr"]
        if pool.shape[:3] == (variants, len(hr), frames):
            return pool
        log.info("%s holds %s, not %d x %d faces: rebuilding", path, pool.shape[:2], variants, len(hr))
    rng = np.random.default_rng(seed + size)
    pool = np.stack([video_degrade(hr, size, rng, keep=frames) for _ in range(variants)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, lr=pool)
    log.info("video-degraded LR pool %s: %s", path, pool.shape)
    return pool
