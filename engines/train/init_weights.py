"""Randomly initialised weights in the shipped layout, exported through the real export code:
lets the inference side integrate before training finishes, and lets tests build real ONNX files
without training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.arch import build
from engines.train import configs as C
from engines.train.card import write_card
from engines.train.export import export_restorer, export_step2


def export_random(
    weights_dir: Path,
    variants: tuple[str, ...] = C.VARIANTS,
    scales: tuple[int, ...] = (4, 8, 16),
    seed: int = 0,
    onestep: bool = False,
) -> list[str]:
    torch.manual_seed(seed)
    names = []
    for v in variants:
        kw = C.step2_kwargs(v)
        arch = C.step2_arch(v)
        prior: Any = build(arch, kw)  # a step 2 prior: `prior_shape` is an attribute torch cannot type
        mean = np.zeros(prior.prior_shape, np.float32)
        n = C.name("step2", None, v)
        write_card(
            export_step2(prior, arch, kw, mean, weights_dir, n),
            n,
            {
                "kind": "step2",
                "summary": "Random initialisation (placeholder, not trained).",
                "trained": False,
            },
        )
        names.append(n)
        for sc in scales:
            kw = C.step1_kwargs(sc, v)
            n = C.name("step1", sc, v)
            write_card(
                export_restorer("step1", build(C.STEP1_ARCH, kw), C.STEP1_ARCH, kw, weights_dir, n),
                n,
                {
                    "kind": "step1",
                    "summary": "Random initialisation (placeholder, not trained).",
                    "trained": False,
                },
            )
            names.append(n)
            if onestep:
                kw = C.onestep_kwargs(sc, v)
                n = C.name("onestep", sc, v)
                export_restorer("onestep", build(C.ONESTEP_ARCH, kw), C.ONESTEP_ARCH, kw, weights_dir, n)
                names.append(n)
    return names
