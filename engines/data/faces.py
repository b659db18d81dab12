"""Aligned 128 px HR faces from the image folders, cached as arrays, with fixed committed splits.

Faces are aligned with the project's own template (`engines.data.align.align_face`) from
landmarks found by the project's detector (passed in as a `FinderFactory`), so training crops are
framed exactly like the crops the pipeline hands to the engines at inference. An image where no
face is found falls back to the folder's median landmarks (these datasets are pre-aligned, so the
median framing is close).

CelebA (aligned, 89x109 here) is the HR source because it frames the whole head with context,
as the template does (the template's 128 px crop spans ~85 px of these images). Its faces are
~18 px between the eyes, so the 128 px crop (~27 px between the eyes) is a 1.5x upscale: the HR
targets carry detail up to ~85 px, not 128 px; said in every model card. UTKFace (200x200) is
cropped tighter than the template's inner ArcFace box, so aligning it needs ~3x more context
than the image has (mirrored borders everywhere): it is not used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from engines.data.align import align_face
from engines.data.finder import FaceFinder, FinderFactory, need_finder

log = logging.getLogger(__name__)

HR_SIZE = 128
MR_SIZE = 64
SPLITS_DIR = Path(__file__).resolve().parents[1] / "splits"
SPLIT_NAMES = ("train", "val", "test")
MAX_HELD_OUT = 500
DATASET = "celeba"


def shared_faces_dir() -> Path:
    """Where ../shared keeps the face folders (repo root's sibling)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "faces"


def make_splits(image_dir: Path, seed: int = 0) -> dict[str, list[str]]:
    """A seeded permutation of the sorted file names cut into train / val / test; val and test
    get 5% each, at most 500 (the committed CelebA lists: 9000 / 500 / 500)."""
    names = sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(names) < 40:
        raise ValueError(f"{image_dir} holds {len(names)} face images; need at least 40")
    order = np.random.default_rng(seed).permutation(len(names))
    names = [names[i] for i in order]
    n_hold = min(MAX_HELD_OUT, len(names) // 20)
    return {
        "test": sorted(names[:n_hold]),
        "val": sorted(names[n_hold : 2 * n_hold]),
        "train": sorted(names[2 * n_hold :]),
    }


def read_split(split: str, dataset: str = DATASET) -> list[str]:
    """File names of a committed split (engines/splits/<dataset>_<split>.txt)."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_NAMES)}; got {split!r}")
    path = SPLITS_DIR / f"{dataset}_{split}.txt"
    if not path.exists():
        raise FileNotFoundError(
            f"split list {path} is missing; run `python run.py train prepare --dataset {dataset}` first"
        )
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def write_splits(splits: dict[str, list[str]], dataset: str = DATASET) -> None:
    SPLITS_DIR.mkdir(parents=True, exist_ok=True)
    for name, files in splits.items():
        (SPLITS_DIR / f"{dataset}_{name}.txt").write_text("\n".join(files) + "\n")


def _landmarks(detector: FaceFinder, image: np.ndarray) -> np.ndarray | None:
    """Landmarks of the most confident face; the image is padded so a face that fills it is found."""
    pad = image.shape[0] // 3
    big = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    dets = detector.detect(big)
    if not dets:
        return None
    best = max(dets, key=lambda d: d.score)
    return np.asarray(best.landmarks, dtype=np.float32) - pad


def align_folder(
    image_dir: Path, names: list[str], finder: FinderFactory, size: int = HR_SIZE, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned RGB uint8 crops (N, size, size, 3) and a per-face flag 'landmarks were detected'.
    The detector runs at a small input width: these images hold one large face each."""
    from tqdm import tqdm

    detector = finder(320, 0.4)
    images = [cv2.imread(str(image_dir / n), cv2.IMREAD_COLOR) for n in names]
    missing = [n for n, im in zip(names, images, strict=False) if im is None]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images of the split are missing in {image_dir}, e.g. {missing[0]}"
        )
    loaded = [im for im in images if im is not None]
    lms = [_landmarks(detector, im) for im in tqdm(loaded, desc="detect", disable=not progress)]
    found = np.array([lm is not None for lm in lms])
    if not found.any():
        raise RuntimeError(f"no face detected in any image of {image_dir}")
    median = np.median(np.stack([lm for lm in lms if lm is not None]), axis=0)
    out = np.empty((len(loaded), size, size, 3), np.uint8)
    for i, (im, lm) in enumerate(zip(loaded, lms, strict=False)):
        # A detection far from the folder's framing is a wrong face (background, second person).
        if lm is None or np.abs(lm - median).max() > 0.25 * im.shape[0]:
            lm, found[i] = median, False
        crop, _ = align_face(im, lm, size)
        out[i] = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    log.info("aligned %d faces of %s (%d on median landmarks)", len(out), image_dir, int((~found).sum()))
    return out, found


def cache_path(cache_dir: Path, split: str, dataset: str = DATASET) -> Path:
    return cache_dir / f"{dataset}_{split}_{HR_SIZE}.npz"


def load_faces(
    split: str,
    cache_dir: Path,
    data_dir: Path | None = None,
    dataset: str = DATASET,
    limit: int | None = None,
    finder: FinderFactory | None = None,
) -> np.ndarray:
    """HR faces of a split, uint8 RGB (N, 128, 128, 3), aligning and caching them on first use
    (which needs `finder`).

    The cache is an .npz of JPEG bytes (quality 95), small enough to carry to a GPU machine.
    """
    path = cache_path(cache_dir, split, dataset)
    if not path.exists():
        src = (data_dir or shared_faces_dir()) / dataset
        if not src.is_dir():
            raise FileNotFoundError(f"face folder {src} not found; pass --data DIR holding {dataset}/")
        names = read_split(split, dataset)
        faces, found = align_folder(src, names, need_finder(finder, f"the {dataset} {split} cache"))
        encoded = [
            cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
            for f in faces
        ]
        lengths = np.array([len(e) for e in encoded], np.int64)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path, data=np.concatenate(encoded).ravel(), lengths=lengths, names=np.array(names), detected=found
        )
    with np.load(path) as z:
        data, lengths = z["data"], z["lengths"]
    n = len(lengths) if limit is None else min(limit, len(lengths))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    out = np.empty((n, HR_SIZE, HR_SIZE, 3), np.uint8)
    for i in range(n):
        bgr = cv2.imdecode(data[offsets[i] : offsets[i + 1]], cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path} holds a face that does not decode; delete it to rebuild it")
        out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return out
