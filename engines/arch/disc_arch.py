"""Patch critics used only in training (never exported): one for real-vs-generated tiny LR faces
(step 1's degradation learning), one for HR faces (step 2's prior).

Kept small on purpose: training runs on 2 shared CPU cores, and a critic larger than the
generator it judges would take most of that time."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm


class PatchDiscriminator(nn.Module):
    """Args: channels (first width), downs (stride-2 layers; 1 for 8-16 px inputs, 3 for 128 px),
    max_channels (cap), stem (a stride-1 3x3 layer first: keeps every pixel of a tiny LR face).
    Shapes: (N, 3, H, W) in [0, 1] -> patch logits (N, 1, H/2^downs, W/2^downs)."""

    def __init__(
        self, channels: int = 32, downs: int = 3, max_channels: int = 128, stem: bool = True
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch_in, ch = 3, channels
        if stem:
            layers += [spectral_norm(nn.Conv2d(3, channels, 3, 1, 1)), nn.LeakyReLU(0.2, True)]
            ch_in = channels
        for i in range(downs):
            ch = min(max_channels, channels * 2 ** (i + (1 if stem else 0)))
            layers += [spectral_norm(nn.Conv2d(ch_in, ch, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
            ch_in = ch
        layers += [
            spectral_norm(nn.Conv2d(ch_in, ch_in, 3, 1, 1)),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ch_in, 1, 3, 1, 1),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)
