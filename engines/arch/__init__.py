"""PyTorch definitions of the FSR networks (training, export, and the torch backend).

* `step1_arch.Step1Restorer`: LR (s px) -> MR (64 px), degradation-aware restoration, plus the
  `DegradationGenerator` (MR -> LR) learned against real tiny faces.
* `residual_prior_arch.ResidualPrior`: step 2 of the fast variant, MR (64 px) -> [code | MR]
  (16 x 16 grid) -> HR (128 px) = bicubic(MR) + a residual from the code and MR skip features.
* `step2_arch.Step2Prior`: the older prior (the quality variant's), MR -> latent (C x 16 x 16)
  -> HR, everything drawn from the code.
* `onestep_arch.OneStep`: LR -> HR directly at the same cost (the ablation).
* `disc_arch.PatchDiscriminator`: the critics used only in training.

Higher factors are configurations of the same design: x32 to 256 px is step 1 (8 -> 64,
`scale_in=8`) then a step 2 with `out_size=256` (`up_stages=2`), x64 to 512 px is step 1
(8 -> 64) and step 2 with `out_size=512` (`up_stages=3`); the latent stays 16 x 16 and the
decoder grows one PixelShuffle stage per doubling. None of these is shipped.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass (Conv2d and Linear; activations and resizes are
    not counted). Batch size of `inputs` should be 1 to get MACs per face."""
    total = 0

    def conv_hook(mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += out.numel() * k
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    handles = [
        m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


def build(arch: str, kwargs: dict[str, Any]) -> nn.Module:
    """Instantiate `arch` ("package.module.Class", as written in weights/manifest.json)."""
    module_name, _, cls_name = arch.rpartition(".")
    if not module_name.startswith("engines.arch."):
        raise ValueError(f"arch {arch!r} is not an engines.arch class")
    cls = getattr(importlib.import_module(module_name), cls_name, None)
    if cls is None:
        raise ValueError(f"no class {cls_name} in {module_name}")
    return cls(**kwargs)
