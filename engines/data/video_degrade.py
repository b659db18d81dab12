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
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

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


def _encode_clip(frames: list[np.ndarray], crf: int) -> np.ndarray:
    """libx264 round trip of a short RGB clip; the last decoded frame (a P-frame)."""
    import av

    h, w = frames[0].shape[:2]
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, 30)
    enc.thread_count = 1
    enc.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency", "bframes": "0"}
    packets = []
    for i, f in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets.extend(enc.encode(frame))
    packets.extend(enc.encode(None))
    dec = av.CodecContext.create("h264", "r")
    decoded = []
    for p in packets:
        decoded.extend(dec.decode(p))
    decoded.extend(dec.decode(None))
    if len(decoded) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} of {len(frames)} frames")
    return decoded[-1].to_ndarray(format="rgb24")


def video_degrade(
    hr: np.ndarray, size: int, rng: np.random.Generator, spec: VideoSpec = DEFAULT
) -> np.ndarray:
    """HR RGB uint8 aligned faces (N, 128, 128, 3) -> LR crops (N, size, size, 3) through one
    mosaic clip per `spec.grid`^2 faces."""
    if hr.shape[1:] != (HR_SIZE, HR_SIZE, 3):
        raise ValueError(f"expected (N, {HR_SIZE}, {HR_SIZE}, 3) faces, got {hr.shape}")
    cell = int(math.ceil(size * spec.context / 2.0) * 2)
    per_clip = spec.grid * spec.grid
    out = np.empty((len(hr), size, size, 3), np.uint8)
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
        clip = []
        for t in range(spec.frames):
            back = spec.frames - 1 - t  # the last frame holds the faces at their poses
            frame = np.zeros((h, w, 3), np.uint8)
            for i, f in enumerate(blurred):
                r, c = divmod(i, cols)
                m = poses[i].copy()
                m[:, 2] += motion[i] * back
                frame[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = cv2.warpAffine(
                    f, m, (cell, cell), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
                )
            noisy = frame.astype(np.float32) + rng.standard_normal(frame.shape).astype(np.float32) * noise
            clip.append(np.clip(noisy, 0, 255).round().astype(np.uint8))
        last = _encode_clip(clip, int(rng.integers(spec.crf[0], spec.crf[1] + 1)))
        for i in range(len(faces)):
            r, c = divmod(i, cols)
            tile = last[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell]
            # The aligner's crop: the pose back to the template, at the LR size.
            to_crop = cv2.invertAffineTransform(poses[i]) * (size / HR_SIZE)
            to_crop[:, 2] += 0.5 * (size / HR_SIZE) - 0.5
            out[start + i] = cv2.warpAffine(
                tile, to_crop, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
    return out


def pool_path(cache_dir: Path, tag: str, size: int) -> Path:
    return cache_dir / f"video_lr_{tag}_{size}.npz"


def load_pool(
    hr: np.ndarray, size: int, cache_dir: Path, tag: str, variants: int = 1, seed: int = 0
) -> np.ndarray:
    """(variants, N, size, size, 3) video-degraded LR crops of `hr` (row i of each variant is
    face i), built once and cached as cache_dir/video_lr_<tag>_<size>.npz. `tag` names the HR
    array (dataset and split) so a different face set never reads a stale pool."""
    path = pool_path(cache_dir, tag, size)
    if path.exists():
        with np.load(path) as z:
            pool = z["lr"]
        if pool.shape[:2] == (variants, len(hr)):
            return pool
        log.info("%s holds %s, not %d x %d faces: rebuilding", path, pool.shape[:2], variants, len(hr))
    rng = np.random.default_rng(seed + size)
    pool = np.stack([video_degrade(hr, size, rng) for _ in range(variants)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, lr=pool)
    log.info("video-degraded LR pool %s: %s", path, pool.shape)
    return pool
