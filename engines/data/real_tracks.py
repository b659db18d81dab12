"""Real track histories for the multi-frame step 1: faces that talk, blink and turn in real
footage, which the synthetic histories (a rigid face plus the aligner's jitter) do not have.

Faces large enough in ../shared/data/videos (aligned 64 px crop natively at least 64 px: the MR
target is then a true downscale, not an enlargement) are linked into tracks frame to frame. Each
track's clip is then made tiny as a camera would (optical blur, area downscale so the face's
aligned crop is natively the LR size), coded with libx264 and decoded; every frame's LR crop is
cut from the decoded small frame through that frame's own alignment, mapped with pixel centres
kept, so crop and target stay registered as an area downscale keeps them. A history is K such
crops of one track, 1-3 frames apart (a live camera enhances a face every few frames), newest
last. The video benchmark's clips (videos/talking/) are never used here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.data.align import alignment_matrix, pixel_map
from engines.data.degrade import h264_clip
from engines.data.finder import FinderFactory, need_finder
from engines.data.harvest import decoded_frames, shared_videos_dir, video_files
from engines.data.video_degrade import POOL_FRAMES

log = logging.getLogger(__name__)

MR_SIZE = 64
MAX_FRAMES = 240
"""Consecutive frames read per clip (the start of it): enough for several seconds of motion."""
DETECT_WIDTH = 640
"""The faces kept are >= 64 px natively, so half-resolution detection finds them all, cheaply."""
MIN_IOU = 0.3
BLUR = 0.4
"""Optical blur of the camera, in small-frame pixels (the video benchmark's value)."""
CRF = (22, 32)
MAX_GAP = 3
"""Largest spacing of a history's frames: a live track is re-enhanced every 1-3 frames."""


@dataclass(frozen=True)
class RealTracks:
    lr: np.ndarray
    """(N, POOL_FRAMES, s, s, 3) RGB uint8, newest last."""
    mr: np.ndarray
    """(N, 64, 64, 3) RGB uint8: the newest frame's target."""
    clips: int


def _tracks(landmarks: list[list[tuple[np.ndarray, np.ndarray]]]) -> list[list[tuple[int, np.ndarray]]]:
    """Greedy IoU linking of per-frame (box, landmarks) into tracks of consecutive frames."""
    done: list[list[tuple[int, np.ndarray]]] = []
    live: list[tuple[np.ndarray, list[tuple[int, np.ndarray]]]] = []
    for i, found in enumerate(landmarks):
        nxt: list[tuple[np.ndarray, list[tuple[int, np.ndarray]]]] = []
        free = list(found)
        for box, track in live:
            ious = [_iou(box, b) for b, _ in free]
            if ious and max(ious) >= MIN_IOU:
                b, lm = free.pop(int(np.argmax(ious)))
                track.append((i, lm))
                nxt.append((b, track))
            else:
                done.append(track)
        nxt.extend((b, [(i, lm)]) for b, lm in free)
        live = nxt
    return done + [t for _, t in live]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _large_runs(tracks: list[list[tuple[int, np.ndarray]]]) -> list[list[tuple[int, np.ndarray]]]:
    """The stretches of each track whose face is natively at least MR_SIZE: a target is then
    never an enlargement."""
    runs: list[list[tuple[int, np.ndarray]]] = []
    for track in tracks:
        run: list[tuple[int, np.ndarray]] = []
        for i, lm in track:
            if native_side(lm) >= MR_SIZE:
                run.append((i, lm))
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
    return runs


def native_side(lm: np.ndarray) -> float:
    """Frame pixels across the aligned crop of these landmarks."""
    m = alignment_matrix(lm, MR_SIZE)
    return MR_SIZE / float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def _track_crops(
    frames: list[np.ndarray], track: list[tuple[int, np.ndarray]], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(T, size, size, 3) LR crops and (T, 64, 64, 3) MR targets of one track, RGB."""
    side = float(np.median([native_side(lm) for _, lm in track]))
    down = side / size
    h, w = frames[0].shape[:2]
    sw, sh = max(16, round(w / down / 2) * 2), max(16, round(h / down / 2) * 2)
    first, last = track[0][0], track[-1][0]
    clip = [
        cv2.resize(cv2.GaussianBlur(frames[i], (0, 0), BLUR * w / sw), (sw, sh), interpolation=cv2.INTER_AREA)
        for i in range(first, last + 1)
    ]
    small = h264_clip(clip, int(rng.integers(CRF[0], CRF[1] + 1)))
    from_small = np.linalg.inv(pixel_map(sw / w, sh / h))
    to_lr = pixel_map(size / MR_SIZE, size / MR_SIZE)
    lr, mr = [], []
    for i, lm in track:
        m64 = np.vstack([alignment_matrix(lm, MR_SIZE), [0.0, 0.0, 1.0]])
        scale = float(np.sqrt(abs(np.linalg.det(m64[:2, :2]))))
        soft = cv2.GaussianBlur(frames[i], (0, 0), 0.5 / scale) if scale < 0.9 else frames[i]
        mr.append(
            cv2.warpAffine(
                soft, m64[:2], (MR_SIZE, MR_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        )
        m = (to_lr @ m64 @ from_small)[:2]
        lr.append(
            cv2.warpAffine(
                small[i - first], m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        )
    return np.stack(lr), np.stack(mr)


def harvest_tracks(
    sources: list[str],
    size: int,
    finder: FinderFactory,
    seed: int = 0,
    frames: int = POOL_FRAMES,
    max_frames: int = MAX_FRAMES,
) -> RealTracks:
    """Histories of `frames` LR crops at `size` px with their MR targets from the first
    `max_frames` frames of every clip."""
    rng = np.random.default_rng(seed + size)
    detector = finder(DETECT_WIDTH, 0.5)
    lrs: list[np.ndarray] = []
    mrs: list[np.ndarray] = []
    clips = 0
    for src in sources:
        video = [f[..., ::-1].copy() for f in decoded_frames(src, 1, max_frames, spread=False)]  # RGB
        if len(video) < frames:
            continue
        found = [
            [(d.box, d.landmarks) for d in detector.detect(np.ascontiguousarray(f[..., ::-1]))] for f in video
        ]
        n_before = len(lrs)
        for run in _large_runs(_tracks(found)):
            if len(run) <= MAX_GAP * (frames - 1):
                continue
            lr, mr = _track_crops(video, run, size, rng)
            for t in range(MAX_GAP * (frames - 1), len(run), 2):  # every other frame: fewer near-copies
                gap = int(rng.integers(1, MAX_GAP + 1))
                lrs.append(lr[t - gap * (frames - 1) : t + 1 : gap])
                mrs.append(mr[t])
        clips += int(len(lrs) > n_before)
        log.info("%s: %d real track histories", Path(src).name, len(lrs) - n_before)
    if not lrs:
        raise ValueError("no track of large faces found in the clips: nothing to harvest")
    return RealTracks(np.stack(lrs), np.stack(mrs), clips)


def load_real_tracks(
    cache_dir: Path, size: int, finder: FinderFactory | None = None, sources: list[str] | None = None
) -> RealTracks:
    """The harvested histories at `size`, built once (which needs `finder`) and cached as
    cache_dir/real_tracks_<size>_k<frames>.npz."""
    path = cache_dir / f"real_tracks_{size}_k{POOL_FRAMES}.npz"
    if not path.exists():
        if sources is None:
            folder = shared_videos_dir()
            if not folder.is_dir():
                raise FileNotFoundError(f"no videos at {folder}; pass clips to harvest tracks from")
            sources = video_files(folder)  # the top folder only: talking/ is the benchmark's
        got = harvest_tracks(sources, size, need_finder(finder, path.name))
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, lr=got.lr, mr=got.mr, clips=np.array(got.clips))
        log.info("real track histories %s: %d from %d clips", path, len(got.lr), got.clips)
    with np.load(path) as z:
        return RealTracks(z["lr"], z["mr"], int(z["clips"]))
