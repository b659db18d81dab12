"""Step 1 of the two-step FSR: LR face (s px) -> MR face (64 px), and its degradation model.

The restorer predicts a residual over a bilinear upscale of its input, so an untrained or
uncertain net degrades gracefully to a smooth image. Most layers run at the LR size (cheap);
each x2 stage halves the channel count so cost stays flat as resolution grows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engines.arch.blocks import ResBlock, Up2, conv


class Step1Restorer(nn.Module):
    """Args:
        scale_in: LR side s (8, 16 or 32); the output is always `scale_out`.
        scale_out: MR side (64).
        channels: width at the LR size; halved (min 16) at each x2 stage.
        blocks: residual blocks at the LR size.
        stage_blocks: residual blocks after each x2 stage.
    Shapes: (N, 3, s, s) in [0, 1] -> (N, 3, 64, 64) in [0, 1].
    """

    def __init__(
        self,
        scale_in: int = 16,
        scale_out: int = 64,
        channels: int = 32,
        blocks: int = 3,
        stage_blocks: int = 1,
    ) -> None:
        super().__init__()
        ratio = scale_out // scale_in
        if scale_in * ratio != scale_out or ratio & (ratio - 1) or ratio < 2:
            raise ValueError(f"scale_out/scale_in must be a power of two >= 2, got {scale_in} -> {scale_out}")
        self.scale_in, self.scale_out = scale_in, scale_out
        self.head = conv(3, channels)
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        ups: list[nn.Module] = []
        ch = channels
        for _ in range(int(math.log2(ratio))):
            nxt = max(16, ch // 2)
            ups.append(Up2(ch, nxt))
            ups.extend(ResBlock(nxt) for _ in range(stage_blocks))
            ch = nxt
        self.up = nn.Sequential(*ups)
        self.tail = conv(ch, 3)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(lr, size=(self.scale_out, self.scale_out), mode="bilinear", align_corners=False)
        x = self.head(lr)
        x = x + self.body(x)
        return (base + self.tail(self.up(x))).clamp(0.0, 1.0)


class DegradationGenerator(nn.Module):
    """MR (64 px) -> LR (s px): the learned camera. An area downscale plus a learned residual
    conditioned on a noise map, so one clean face can yield many plausible degraded ones
    (blur, sensor noise, codec blocking) as the adversary against real tiny faces demands.

    Shapes: (N, 3, 64, 64), noise (N, 1, s, s) -> (N, 3, s, s) in [0, 1].
    """

    def __init__(self, scale_in: int = 16, scale_out: int = 64, channels: int = 32, blocks: int = 3) -> None:
        super().__init__()
        self.scale_in, self.scale_out = scale_in, scale_out
        ratio = scale_out // scale_in
        # A strided conv sees the sub-pixel detail the area average throws away (to learn blur kernels).
        self.down = nn.Sequential(
            conv(3, channels, k=ratio + 1 if ratio % 2 == 0 else ratio, stride=ratio),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.head = conv(channels + 4, channels)
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        self.tail = conv(channels, 3)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, mr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        base = F.adaptive_avg_pool2d(mr, self.scale_in)
        x = self.head(torch.cat([self.down(mr), base, noise], dim=1))
        return (base + self.tail(self.body(x))).clamp(0.0, 1.0)
