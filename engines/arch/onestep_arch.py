"""The one-step ablation: LR (s px) -> HR (128 px) directly, at the MAC cost of step 1 + step 2.

Same building blocks and the same training data and degradations as the two-step model; the
only difference is the missing MR stepping stone and latent prior, which is what the quality
benchmark measures.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engines.arch.blocks import ResBlock, Up2, conv


class OneStep(nn.Module):
    """Args: scale_in (s), scale_out (128), channels at the LR size, blocks at the LR size.
    Shapes: (N, 3, s, s) -> (N, 3, 128, 128) in [0, 1]."""

    def __init__(self, scale_in: int = 16, scale_out: int = 128, channels: int = 48, blocks: int = 4) -> None:
        super().__init__()
        ratio = scale_out // scale_in
        if scale_in * ratio != scale_out or ratio & (ratio - 1) or ratio < 2:
            raise ValueError(f"scale_out/scale_in must be a power of two >= 2, got {scale_in} -> {scale_out}")
        self.scale_out = scale_out
        self.head = conv(3, channels)
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        ups: list[nn.Module] = []
        ch = channels
        for _ in range(int(math.log2(ratio))):
            nxt = max(8, ch // 2)
            ups += [Up2(ch, nxt), conv(nxt, nxt), nn.LeakyReLU(0.2, inplace=True)]
            ch = nxt
        self.up = nn.Sequential(*ups)
        self.tail = conv(ch, 3)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(lr, size=(self.scale_out, self.scale_out), mode="bilinear", align_corners=False)
        x = self.head(lr)
        x = x + self.body(x)
        return (base + self.tail(self.up(x))).clamp(0.0, 1.0)
