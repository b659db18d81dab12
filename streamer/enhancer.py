"""Builds the enhancer that the configuration names, from engines' plain-argument API."""

from __future__ import annotations

from pathlib import Path

from engines.base import INPUT_SIZE_FOR_SCALE, Enhancer
from engines.bicubic import BicubicEnhancer
from streamer.config import EnhanceConfig


def build_enhancer(cfg: EnhanceConfig) -> Enhancer:
    if cfg.engine == "bicubic":
        return BicubicEnhancer(input_size=INPUT_SIZE_FOR_SCALE[cfg.scale], scale=cfg.scale)
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
