"""Builds the engines that the configuration names, from engines' plain-argument API."""

from __future__ import annotations

from pathlib import Path

from engines.base import INPUT_SIZE_FOR_SCALE, Enhancer
from engines.bicubic import BicubicEnhancer
from streamer.config import EnhanceConfig


def build_enhancer(cfg: EnhanceConfig, scale: int | None = None) -> Enhancer:
    """The engine of `cfg` at `scale` (default: the configured one)."""
    scale = cfg.scale if scale is None else scale
    if cfg.engine == "bicubic":
        return BicubicEnhancer(input_size=INPUT_SIZE_FOR_SCALE[scale], scale=scale)
    from engines.fsr import load_two_step

    return load_two_step(
        scale,
        cfg.variant,
        cfg.backend,
        prior_strength=cfg.prior_strength,
        temporal=cfg.temporal,
        threads=cfg.threads,
        weights_dir=Path(cfg.weights_dir) if cfg.weights_dir else None,
        trt_cache_dir=Path(cfg.trt_cache_dir) if cfg.trt_cache_dir else None,
        frames=cfg.frames,
        precision=cfg.precision,
    )


def build_engines(cfg: EnhanceConfig) -> dict[int, Enhancer]:
    """The engines a pipeline runs, by input side: with `native` entry one per factor (each face
    takes the one that fits its size, streamer.entry), with `fixed` entry the configured one."""
    scales = sorted(INPUT_SIZE_FOR_SCALE) if cfg.entry == "native" else [cfg.scale]
    return {INPUT_SIZE_FOR_SCALE[s]: build_enhancer(cfg, s) for s in scales}
