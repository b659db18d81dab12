"""Architectures of every shipped model, by variant. The `fast` variants fit the CPU budget
(step 1 x8 + step 2 <= 0.15 GMAC per face, counted by engines.arch.count_macs); `quality`
variants are ~5x larger, for GPUs."""

from __future__ import annotations

import functools
from typing import Any

import torch

from engines.arch import build, count_macs
from engines.base import INPUT_SIZE_FOR_SCALE, STEP1_SCALES

SCALES = {s: INPUT_SIZE_FOR_SCALE[s] for s in STEP1_SCALES}
"""Factor -> LR side of the step 1 networks; all go through a 64 px MR face to a 128 px face."""

MR_SIZE = 64
HR_SIZE = 128
VARIANTS = ("fast", "quality")
FAST_BUDGET_GMAC = 0.15

STEP1_ARCH = "engines.arch.step1_arch.Step1Restorer"
STEP2_ARCHS = {
    "fast": "engines.arch.residual_prior_arch.ResidualPrior",
    "quality": "engines.arch.step2_arch.Step2Prior",
}
"""The fast prior is the residual one (bicubic + code + MR skips); the quality variant, for GPUs,
has not been retrained with it yet."""
ONESTEP_ARCH = "engines.arch.onestep_arch.OneStep"
DEGRADE_ARCH = "engines.arch.step1_arch.DegradationGenerator"


def check_choice(scale: int, variant: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


def step1_kwargs(scale: int, variant: str, frames: int = 1) -> dict[str, Any]:
    """`frames` > 1: the multi-frame step 1 (a track's last `frames` crops in, engines/arch/blocks.py)."""
    check_choice(scale, variant)
    s = SCALES[scale]
    multi = {"frames": frames} if frames > 1 else {}
    if variant == "fast":
        width = {8: 32, 16: 40, 32: 24}[s]
        blocks = 4 if s == 8 else 3
        return {
            "scale_in": s,
            "scale_out": MR_SIZE,
            "channels": width,
            "blocks": blocks,
            "stage_blocks": 1,
            "upsample": "resize",
            "base": "bicubic",
            **multi,
        }
    return {"scale_in": s, "scale_out": MR_SIZE, "channels": 64, "blocks": 4, "stage_blocks": 1, **multi}


def step2_arch(variant: str) -> str:
    check_choice(8, variant)
    return STEP2_ARCHS[variant]


def step2_kwargs(variant: str) -> dict[str, Any]:
    check_choice(8, variant)
    if variant == "fast":
        return {
            "code_ch": 16,
            "enc_channels": 32,
            "dec_channels": 32,
            "mid": 24,
            "fine": 16,
            "blocks": 1,
            "out_size": HR_SIZE,
        }
    return {"latent_ch": 32, "enc_channels": 48, "dec_channels": 96, "blocks": 2, "out_size": HR_SIZE}


def degrade_kwargs(scale: int) -> dict[str, Any]:
    return {"scale_in": SCALES[scale], "scale_out": MR_SIZE, "channels": 32, "blocks": 3}


def name(kind: str, scale: int | None, variant: str, tag: str = "", frames: int = 1) -> str:
    """Folder name under engines/weights: step1_x8_fast, step1_x8_fast_k3 (3 frames fused),
    step2_fast, onestep_x8_fast, ..."""
    base = f"{kind}_x{scale}_{variant}" if kind in ("step1", "onestep") else f"{kind}_{variant}"
    base = f"{base}_k{frames}" if frames > 1 else base
    return f"{base}_{tag}" if tag else base


def gmac(arch: str, kwargs: dict[str, Any]) -> float:
    """MACs per face in GMAC; step 2 counts encoder + decoder."""
    return _gmac(arch, tuple(sorted(kwargs.items())))


@functools.lru_cache(maxsize=256)
def _gmac(arch: str, items: tuple[tuple[str, Any], ...]) -> float:
    kwargs = dict(items)
    model = build(arch, kwargs).eval()
    if arch in STEP2_ARCHS.values():
        return count_macs(model, torch.zeros(1, 3, MR_SIZE, MR_SIZE)) / 1e9
    s = kwargs["scale_in"]
    return count_macs(model, torch.zeros(1, 3 * kwargs.get("frames", 1), s, s)) / 1e9


def onestep_kwargs(scale: int, variant: str) -> dict[str, Any]:
    """The widest one-step net whose MACs do not exceed step 1 + step 2 of the same variant."""
    check_choice(scale, variant)
    target = gmac(STEP1_ARCH, step1_kwargs(scale, variant)) + gmac(step2_arch(variant), step2_kwargs(variant))
    blocks = 4 if variant == "fast" else 8
    new = {"upsample": "resize", "base": "bicubic"} if variant == "fast" else {}
    best = {"scale_in": SCALES[scale], "scale_out": HR_SIZE, "channels": 16, "blocks": blocks, **new}
    for ch in range(16, 257, 8):
        kw = {"scale_in": SCALES[scale], "scale_out": HR_SIZE, "channels": ch, "blocks": blocks, **new}
        if gmac(ONESTEP_ARCH, kw) > target:
            break
        best = kw
    return best
