"""Step 1 of the two-step FSR: LR face (s px) -> MR face (64 px), and its degradation model.

The restorer is a `ResidualUpscaler` (engines/arch/blocks.py) whose x2 stages hold residual
blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.arch.blocks import UPSAMPLERS, ResBlock, ResidualUpscaler, conv, unit_range


class Step1Restorer(ResidualUpscaler):
    """Args:
        scale_in: LR side s (8, 16 or 32); the output is always `scale_out`.
        scale_out: MR side (64).
        channels: width at the LR size; halved (min 16) at each x2 stage.
        blocks: residual blocks at the LR size.
        stage_blocks: residual blocks after each x2 stage.
        upsample: "resize" (bilinear + conv, no checkerboard) or "pixelshuffle" (older weights).
        base: the interpolation the output is a residual over ("bicubic"; "bilinear" in older weights).
        frames: aligned crops of one track fused, oldest first, newest last (1: the newest alone).
    Shapes: (N, 3 * frames, s, s) in [0, 1] -> (N, 3, 64, 64) in [0, 1].
    """

    def __init__(
        self,
        scale_in: int = 16,
        scale_out: int = 64,
        channels: int = 32,
        blocks: int = 3,
        stage_blocks: int = 1,
        upsample: str = "pixelshuffle",
        base: str = "bilinear",
        frames: int = 1,
    ) -> None:
        up = UPSAMPLERS[upsample]

        def stage(cin: int, cout: int) -> list[nn.Module]:
            return [up(cin, cout), *(ResBlock(cout) for _ in range(stage_blocks))]

        super().__init__(
            scale_in, scale_out, channels, blocks, stage, min_channels=16, base=base, frames=frames
        )


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
        if self.tail.bias is not None:
            nn.init.zeros_(self.tail.bias)

    def forward(self, mr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        base = F.adaptive_avg_pool2d(mr, self.scale_in)
        x = self.head(torch.cat([self.down(mr), base, noise], dim=1))
        return unit_range(base + self.tail(self.body(x)), self.training)
