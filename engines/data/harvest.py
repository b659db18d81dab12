"""Harvest real tiny faces from videos: the unpaired LR set that step 1's degradation generator
learns to imitate (and that `train --adapt SOURCE` takes from one camera).

Frames are decoded with PyAV, faces found with the project's detector, and every face whose box
is 12-80 px wide is aligned with the project's template to each LR size, exactly as the live
pipeline would crop it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from engines.data.align import align_face
from engines.data.finder import FinderFactory, need_finder

log = logging.getLogger(__name__)

LR_SIZES = (8, 16, 32)
MIN_FACE_PX, MAX_FACE_PX = 12.0, 80.0
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".gif")


def shared_videos_dir() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "videos"


def decoded_frames(source: str, every: int, max_frames: int, spread: bool = True) -> Iterable[np.ndarray]:
    """Every `every`-th decoded frame of a file or URL, BGR uint8, at most `max_frames`; with
    `spread`, spaced wider so they cover the whole clip when its length is known."""
    import av

    try:
        container = av.open(source, timeout=10.0)
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"cannot open video source {source!r}: {exc}") from None
    with container:
        known = container.streams.video[0].frames
        if spread and known > 0:
            every = max(every, known // max_frames)
        got = 0
        for i, frame in enumerate(container.decode(video=0)):
            if i % every:
                continue
            yield frame.to_ndarray(format="bgr24")
            got += 1
            if got >= max_frames:
                break


def harvest(
    sources: Iterable[str],
    sizes: tuple[int, ...] = LR_SIZES,
    every: int = 5,
    max_frames: int = 60,
    input_width: int = 960,
    progress: bool = True,
    *,
    finder: FinderFactory,
) -> dict[int, np.ndarray]:
    """RGB uint8 aligned faces per LR size: {s: (M, s, s, 3)}."""
    from tqdm import tqdm

    detector = finder(input_width, 0.5)
    out: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
    for src in sources:
        n_before = len(out[sizes[0]])
        for img in tqdm(
            decoded_frames(src, every, max_frames),
            desc=Path(src).name[:30],
            disable=not progress,
            total=max_frames,
        ):
            for det in detector.detect(img):
                width = float(det.box[2] - det.box[0])
                if not MIN_FACE_PX <= width <= MAX_FACE_PX:
                    continue
                for s in sizes:
                    crop, _ = align_face(img, det.landmarks, s)
                    out[s].append(crop[:, :, ::-1].copy())
        log.info("%s: %d tiny faces", src, len(out[sizes[0]]) - n_before)
    return {s: (np.stack(v) if v else np.zeros((0, s, s, 3), np.uint8)) for s, v in out.items()}


def video_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def load_real_lr(
    cache_dir: Path,
    size: int,
    sources: list[str] | None = None,
    tag: str = "videos",
    finder: FinderFactory | None = None,
) -> np.ndarray:
    """Real LR faces at `size`, harvested once (which needs `finder`) and cached as
    cache_dir/real_lr_<tag>.npz."""
    path = cache_dir / f"real_lr_{tag}.npz"
    if not path.exists():
        if sources is None:
            folder = shared_videos_dir()
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"no videos at {folder}; pass video files to harvest real LR faces from"
                )
            sources = video_files(folder)
        faces = harvest(sources, finder=need_finder(finder, f"the real LR face cache {path.name}"))
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {f"s{s}": v for s, v in faces.items()}
        np.savez_compressed(path, **arrays)
    with np.load(path) as z:
        key = f"s{size}"
        if key not in z:
            raise ValueError(f"{path} has no faces at {size} px; delete it to re-harvest")
        return z[key]
