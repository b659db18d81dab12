"""All-Age-Faces as true-HR training and test faces, aligned from the dataset's own landmarks.

The originals (~300 x 340 px, whole head with context) carry 49 landmarks each in
`keypoints49.tsv` (name, then x y pairs: 10 brow, 9 nose, 12 eye, 18 mouth points). The five
points of the alignment template are derived from them (eye centres = mean of each eye's six
points, nose tip = the lowest point of the nose bridge, mouth corners = the outer lip's first
and seventh points) and the faces are cropped with the engines' template (engines/data/align.py),
as the pipeline crops them. Their 128 px crops are ~2.5x downscales: real detail at 128 px,
unlike CelebA's 1.5x upscales (engines/data/faces.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from engines.data.align import align_face
from engines.data.faces import HR_SIZE, cache_path, make_splits, read_split, shared_faces_dir, write_splits

log = logging.getLogger(__name__)

DATASET = "allage"
N_POINTS = 49
RIGHT_EYE, LEFT_EYE = slice(19, 25), slice(25, 31)
"""The subject's right eye is the one on the image's left (the template's first point)."""
NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = 13, 31, 37


def read_keypoints(path: Path) -> dict[str, np.ndarray]:
    """name -> (49, 2) float landmarks."""
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 1 + 2 * N_POINTS:
            raise ValueError(f"{path}: {parts[0]} has {len(parts) - 1} numbers, expected {2 * N_POINTS}")
        out[parts[0]] = np.asarray(parts[1:], np.float64).reshape(N_POINTS, 2)
    return out


def five_points(p49: np.ndarray) -> np.ndarray:
    """The template's five points (image-left eye, image-right eye, nose, mouth corners)."""
    return np.stack(
        [p49[RIGHT_EYE].mean(0), p49[LEFT_EYE].mean(0), p49[NOSE_TIP], p49[MOUTH_LEFT], p49[MOUTH_RIGHT]]
    )


def folder(data_dir: Path | None = None) -> Path:
    return (data_dir or shared_faces_dir()) / DATASET


def ensure_splits(data_dir: Path | None = None, seed: int = 0) -> None:
    """Write engines/splits/allage_*.txt once (the committed lists are the reference)."""
    try:
        read_split("test", DATASET)
    except FileNotFoundError:
        write_splits(make_splits(folder(data_dir) / "images", seed=seed), DATASET)


def align_split(
    split: str, data_dir: Path | None = None, size: int = HR_SIZE
) -> tuple[list[str], np.ndarray]:
    """Names and aligned RGB uint8 crops (N, size, size, 3) of one split."""
    root = folder(data_dir)
    points = read_keypoints(root / "keypoints49.tsv")
    names = read_split(split, DATASET)
    out = np.empty((len(names), size, size, 3), np.uint8)
    for i, name in enumerate(names):
        image = cv2.imread(str(root / "images" / name), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"{root / 'images' / name} is missing or unreadable")
        crop, _ = align_face(image, five_points(points[name]), size)
        out[i] = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return names, out


def build_cache(split: str, cache_dir: Path, data_dir: Path | None = None) -> Path:
    """Align one split and write it in engines.data.faces' cache layout (JPEG q95 bytes), so
    `faces.load_faces(split, cache_dir, dataset="allage")` reads it like CelebA's."""
    path = cache_path(cache_dir, split, DATASET)
    if path.exists():
        return path
    ensure_splits(data_dir)
    names, faces = align_split(split, data_dir)
    encoded = [
        cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
        for f in faces
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        data=np.concatenate(encoded).ravel(),
        lengths=np.array([len(e) for e in encoded], np.int64),
        names=np.array(names),
        detected=np.ones(len(names), bool),
    )
    log.info("aligned %d %s faces of split %s into %s", len(names), DATASET, split, path)
    return path
