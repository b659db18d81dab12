"""`run.py train --adapt SOURCE`: fine-tune step 1 on one camera's degradation.

The tiny faces of SOURCE (a video file or URL, decoded with PyAV) become the unpaired real LR set;
the degradation generator and the restorer continue training from the shipped weights for a short
run. The result is a complete new weights folder (a copy of the shipped one with the adapted
step 1 replacing the original), usable as a drop-in for the runtime.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from engines.data.finder import need_finder
from engines.data.harvest import harvest
from engines.train import configs as C
from engines.train.common import TrainOptions
from engines.train.step1 import train_restorer

log = logging.getLogger(__name__)


def adapt(
    source: str, scale: int, variant: str, opts: TrainOptions, weights: Path, max_frames: int = 300
) -> dict[str, Any]:
    C.check_choice(scale, variant)
    s = C.SCALES[scale]
    if not (weights / C.name("step1", scale, variant) / "model.pt").exists():
        raise FileNotFoundError(
            f"no {C.name('step1', scale, variant)} in {weights}; train it first or pass --weights"
        )
    finder = need_finder(opts.finder, f"adaptation to {source}")
    faces = harvest(
        [source], sizes=(s,), every=2, max_frames=max_frames, progress=opts.progress, finder=finder
    )[s]
    if len(faces) < 8:
        raise ValueError(
            f"found only {len(faces)} faces of 12-80 px in {source}; adaptation needs >= 8 "
            "(a longer clip, or a camera where faces are small)"
        )
    if opts.out.resolve() == weights.resolve():
        raise ValueError("--out must be a new folder for adapted weights, not the source weights folder")
    shutil.copytree(weights, opts.out, dirs_exist_ok=True)
    log.info("adapting %s on %d faces from %s", C.name("step1", scale, variant), len(faces), source)
    return train_restorer(
        "step1",
        scale,
        variant,
        replace(opts, resume=False),
        real_lr=faces,
        real_desc=f"{len(faces)} tiny faces harvested from {source}",
        init_from=weights,
        out_dir=opts.out,
        note=f"Adapted to the camera of {source} (--adapt).",
        video=False,  # the camera's own faces teach G its degradation; no generic pool to build
    )
