"""HR faces of one or several datasets by name ("celeba", "allage", "celeba,allage"): what the
trainers and the image benchmark load."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.data import allage
from engines.data.faces import load_faces
from engines.data.finder import FinderFactory


def names(datasets: str) -> list[str]:
    out = [d.strip() for d in datasets.split(",") if d.strip()]
    if not out:
        raise ValueError(f"no dataset named in {datasets!r}")
    return out


def load_hr(
    split: str,
    cache_dir: Path,
    data_dir: Path | None = None,
    datasets: str = "celeba",
    limit: int | None = None,
    finder: FinderFactory | None = None,
) -> np.ndarray:
    """uint8 RGB (N, 128, 128, 3) of every named dataset's split, concatenated in order; `limit`
    caps each dataset (smoke runs). All-Age-Faces is aligned from its own landmarks, the others
    from the project's detector (engines.data.faces)."""
    parts = []
    for name in names(datasets):
        if name == allage.DATASET:
            allage.build_cache(split, cache_dir, data_dir)
        parts.append(load_faces(split, cache_dir, data_dir, dataset=name, limit=limit, finder=finder))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def split_note(datasets: str) -> str:
    """Which committed split lists a model was trained on and which were held out (model cards)."""
    ds = names(datasets)
    train = ", ".join(f"engines/splits/{d}_train.txt" for d in ds)
    held = ", ".join(f"{d}_{s}.txt" for d in ds for s in ("val", "test"))
    return f"{train} (train); {held} held out"
