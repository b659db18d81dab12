"""Builds the enhancer named by the configuration."""

from __future__ import annotations

from streamer.config import EnhanceConfig

from engines.base import Enhancer
from engines.bicubic import BicubicEnhancer

INPUT_SIZE_FOR_SCALE = {4: 32, 8: 16, 16: 8}
"""Every shipped scale produces a 128 px face; the LR crop side follows from the factor."""


def build_enhancer(cfg: EnhanceConfig) -> Enhancer:
    input_size = INPUT_SIZE_FOR_SCALE[cfg.scale]
    if cfg.engine == "bicubic":
        return BicubicEnhancer(input_size=input_size, scale=cfg.scale)
    raise ValueError(f"unknown engine {cfg.engine!r}; valid: bicubic, fsr")
