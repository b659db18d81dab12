"""Export trained networks to the shipped layout under engines/weights/ (the contract with the
inference backends): ONNX opset 17 with a dynamic batch axis, the state dict (float16, loads into
float32 modules), a manifest entry.

    step1_*/  model.onnx ("lr" -> "mr"), model.pt
    step2_*/  encoder.onnx ("mr" -> "latent"), decoder.onnx ("latent" -> "hr"), latent_mean.npy, model.pt
    manifest.json  {"models": {name: {kind, files, gmac, arch, arch_kwargs, ...}}}
"""

from __future__ import annotations

import fcntl
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engines.train.configs import MR_SIZE, gmac

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
OPSET = 17


def _half_round(model: nn.Module) -> nn.Module:
    """Round the weights to float16 precision (kept as float32): the state dicts ship as float16
    to keep the package small, and the ONNX graphs are made from the same rounded weights so the
    torch and ONNX backends compute the same function."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
    return model


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
        for k, v in model.state_dict().items()
    }


def _onnx(model: nn.Module, example: torch.Tensor, path: Path, in_name: str, out_name: str) -> None:
    model = model.eval().cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[in_name],
            output_names=[out_name],
            opset_version=OPSET,
            dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}},
            dynamo=False,
        )


def update_manifest(weights_dir: Path, name: str, entry: dict[str, Any]) -> None:
    """Add or replace one model's entry, keeping the others (several trainings write here)."""
    path = weights_dir / "manifest.json"
    weights_dir.mkdir(parents=True, exist_ok=True)
    with open(weights_dir / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel trainings write one manifest
        manifest = json.loads(path.read_text()) if path.exists() else {"models": {}}
        manifest["models"][name] = entry
        manifest["models"] = dict(sorted(manifest["models"].items()))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.replace(path)


OUTPUT_NAMES = {"step1": "mr", "onestep": "hr"}
"""ONNX output name per single-network kind (the input is always "lr")."""


def export_restorer(
    kind: str,
    model: nn.Module,
    arch: str,
    kwargs: dict[str, Any],
    weights_dir: Path,
    name: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Step 1 or the one-step ablation: one network, one ONNX file and its state dict, recorded in
    the manifest (the one-step model is used only by the quality benchmark)."""
    if kind not in OUTPUT_NAMES:
        raise ValueError(f"kind must be one of {sorted(OUTPUT_NAMES)}, got {kind!r}")
    output = OUTPUT_NAMES[kind]
    out = weights_dir / name
    out.mkdir(parents=True, exist_ok=True)
    model = _half_round(model.eval().cpu())
    s, frames = kwargs["scale_in"], kwargs.get("frames", 1)
    _onnx(model, torch.rand(2, 3 * frames, s, s), out / "model.onnx", "lr", output)
    torch.save(_state(model), out / "model.pt")
    entry = {
        "kind": kind,
        "scale_in": s,
        "frames": frames,
        "scale_out": kwargs.get("scale_out", MR_SIZE),
        "files": {
            "onnx": f"{name}/model.onnx",
            "state_dict": f"{name}/model.pt",
            "card": f"{name}/MODEL_CARD.md",
        },
        "gmac": round(gmac(arch, kwargs), 4),
        "arch": arch,
        "arch_kwargs": kwargs,
        **(extra or {}),
    }
    update_manifest(weights_dir, name, entry)
    log.info("exported %s to %s", name, out)
    return out


def export_step2(
    model: nn.Module,
    arch: str,
    kwargs: dict[str, Any],
    latent_mean: np.ndarray,
    weights_dir: Path,
    name: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """`model` is a step 2 prior; its `.encoder` and `.decoder` become two graphs. `latent_mean`
    covers the part of the latent the runtime interpolates (`prior_shape`)."""
    out = weights_dir / name
    out.mkdir(parents=True, exist_ok=True)
    model = _half_round(model.eval().cpu())
    prior: Any = model  # a step 2 prior: its parts and shapes are attributes torch cannot type
    latent_shape, prior_shape = list(prior.latent_shape), list(prior.prior_shape)
    if tuple(latent_mean.shape) != tuple(prior_shape):
        raise ValueError(f"latent_mean has shape {latent_mean.shape}, expected {prior_shape}")
    _onnx(prior.encoder, torch.rand(2, 3, MR_SIZE, MR_SIZE), out / "encoder.onnx", "mr", "latent")
    _onnx(prior.decoder, torch.randn(2, *latent_shape), out / "decoder.onnx", "latent", "hr")
    np.save(out / "latent_mean.npy", latent_mean.astype(np.float32))
    torch.save(_state(model), out / "model.pt")
    entry = {
        "kind": "step2",
        "scale_in": MR_SIZE,
        "scale_out": kwargs["out_size"],
        "latent_shape": latent_shape,
        "prior_shape": prior_shape,
        "files": {
            "encoder": f"{name}/encoder.onnx",
            "decoder": f"{name}/decoder.onnx",
            "latent_mean": f"{name}/latent_mean.npy",
            "state_dict": f"{name}/model.pt",
            "card": f"{name}/MODEL_CARD.md",
        },
        "gmac": round(gmac(arch, kwargs), 4),
        "arch": arch,
        "arch_kwargs": kwargs,
        "arch_parts": {"encoder": "encoder", "decoder": "decoder"},
        **(extra or {}),
    }
    update_manifest(weights_dir, name, entry)
    log.info("exported %s to %s", name, out)
    return out
