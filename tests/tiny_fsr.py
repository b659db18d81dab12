"""Tiny stand-ins for the shipped FSR networks, with the same ONNX I/O contract, for tests.

They are real torch modules exported to real ONNX files, so the tests exercise the same
loading, runtime and numerics paths as the shipped weights, in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

LATENT_SHAPE = (8, 4, 4)


class TinyStep1(nn.Module):
    """(N, 3 * frames, s, s) -> (N, 3, 64, 64); the base is the newest frame (the last 3 channels)."""

    def __init__(self, in_size: int = 16, channels: int = 8, frames: int = 1) -> None:
        super().__init__()
        self.in_size = in_size
        self.head = nn.Conv2d(3 * frames, channels, 3, padding=1)
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.head(lr))
        x = nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        up = nn.functional.interpolate(lr[:, -3:], size=(64, 64), mode="bilinear", align_corners=False)
        return torch.clamp(up + 0.1 * self.tail(x), 0.0, 1.0)


class TinyEncoder(nn.Module):
    """(N, 3, 64, 64) -> (N, 8, 4, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 4, stride=4)
        self.conv2 = nn.Conv2d(8, LATENT_SHAPE[0], 4, stride=4)

    def forward(self, mr: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(mr)))


class TinyDecoder(nn.Module):
    """(N, 8, 4, 4) -> (N, 3, 128, 128)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(LATENT_SHAPE[0], 3, 3, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(
            self.conv(latent), size=(128, 128), mode="bilinear", align_corners=False
        )
        return torch.sigmoid(x)


class TinyStep2(nn.Module):
    """Encoder and decoder in one module, as the step 2 network is trained."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = TinyEncoder()
        self.decoder = TinyDecoder()

    def encode(self, mr: torch.Tensor) -> torch.Tensor:
        return self.encoder(mr)


def export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str) -> Path:
    """Opset 17 with a dynamic batch axis, as the shipped files are exported."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module.eval(),
        (example,),
        str(path),
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "n"}, output_name: {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def make_weights(
    root: Path,
    scales: tuple[int, ...] = (8,),
    variant: str = "fast",
    seed: int = 0,
    multi_frame: dict[int, int] | None = None,
) -> Path:
    """A weights folder following the shipped layout, with random tiny networks;
    `multi_frame` {scale: frames} adds multi-frame step 1 models (step1_x8_fast_k3)."""
    torch.manual_seed(seed)
    sizes = {4: 32, 8: 16, 16: 8}
    models: dict[str, dict[str, object]] = {}
    step1s = [(scale, 1) for scale in scales] + sorted((multi_frame or {}).items())
    for scale, frames in step1s:
        name = f"step1_x{scale}_{variant}" + (f"_k{frames}" if frames > 1 else "")
        net = TinyStep1(in_size=sizes[scale], frames=frames)
        folder = root / name
        export(net, torch.rand(2, 3 * frames, sizes[scale], sizes[scale]), folder / "model.onnx", "lr", "mr")
        torch.save(net.state_dict(), folder / "model.pt")
        models[name] = {
            "kind": "step1",
            "files": ["model.onnx", "model.pt"],
            "arch": "tiny_fsr:TinyStep1",
            "arch_kwargs": {"in_size": sizes[scale], "frames": frames},
            "gmac": 0.0,
        }
    step2 = TinyStep2()
    folder = root / f"step2_{variant}"
    export(step2.encoder, torch.rand(2, 3, 64, 64), folder / "encoder.onnx", "mr", "latent")
    export(step2.decoder, torch.rand(2, *LATENT_SHAPE), folder / "decoder.onnx", "latent", "hr")
    torch.save(step2.state_dict(), folder / "model.pt")
    with torch.no_grad():
        mean = step2.encoder(torch.rand(64, 3, 64, 64)).mean(0).numpy()
    np.save(folder / "latent_mean.npy", mean.astype(np.float32))
    models[f"step2_{variant}"] = {
        "kind": "step2",
        "files": ["encoder.onnx", "decoder.onnx", "latent_mean.npy"],
        "arch": "tiny_fsr:TinyStep2",
        "arch_kwargs": {},
        "gmac": 0.0,
    }
    (root / "manifest.json").write_text(json.dumps({"models": models}, indent=1))
    return root
