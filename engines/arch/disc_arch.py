"""Patch critics used only in training (never exported): one for real-vs-generated tiny LR faces
(step 1's degradation learning), one for HR faces (step 2's prior)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm


class PatchDiscriminator(nn.Module):
    """Args: channels (first width), downs (stride-2 layers; 1 for 8-16 px inputs, 3 for 128 px).
    Shapes: (N, 3, H, W) in [0, 1] -> patch logits (N, 1, H/2^downs, W/2^downs)."""

    def __init__(self, channels: int = 32, downs: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(3, channels, 3, 1, 1)), nn.LeakyReLU(0.2, True)]
        ch = channels
        for _ in range(downs):
            layers += [spectral_norm(nn.Conv2d(ch, ch * 2, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
            ch *= 2
        layers += [spectral_norm(nn.Conv2d(ch, ch, 3, 1, 1)), nn.LeakyReLU(0.2, True), nn.Conv2d(ch, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)
