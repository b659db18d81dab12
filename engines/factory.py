"""Builds the enhancer named by the configuration."""

from __future__ import annotations

from pathlib import Path

from engines.base import Enhancer
from engines.bicubic import BicubicEnhancer
from streamer.config import EnhanceConfig

INPUT_SIZE_FOR_SCALE = {4: 32, 8: 16, 16: 8}
"""Every shipped scale produces a 128 px face; the LR crop side follows from the factor."""


def build_enhancer(cfg: EnhanceConfig) -> Enhancer:
    input_size = INPUT_SIZE_FOR_SCALE[cfg.scale]
    if cfg.engine == "bicubic":
        return BicubicEnhancer(input_size=input_size, scale=cfg.scale)
    if cfg.engine == "fsr":
        from engines.fsr import load_two_step

        return load_two_step(
            cfg.scale,
            cfg.variant,
            cfg.backend,
            prior_strength=cfg.prior_strength,
            temporal=cfg.temporal,
            threads=cfg.threads,
            weights_dir=Path(cfg.weights_dir) if cfg.weights_dir else None,
            trt_cache_dir=Path(cfg.trt_cache_dir) if cfg.trt_cache_dir else None,
        )
    raise ValueError(f"unknown engine {cfg.engine!r}; valid: bicubic, fsr")
