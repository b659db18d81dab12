"""The one-step ablation: LR (s px) -> HR (128 px) directly, at the MAC cost of step 1 + step 2.

Same building blocks and the same training data and degradations as the two-step model; the
only difference is the missing MR stepping stone and latent prior, which is what the quality
benchmark measures.
"""

from __future__ import annotations

from torch import nn

from engines.arch.blocks import UPSAMPLERS, ResidualUpscaler, conv


class OneStep(ResidualUpscaler):
    """Args: scale_in (s), scale_out (128), channels at the LR size, blocks at the LR size.
    Each x2 stage is a sub-pixel upsample and one conv (no residual blocks, width >= 8), which is
    what fits 128 px output into step 1 + step 2's MAC budget. `upsample` and `base` as in
    `Step1Restorer`.
    Shapes: (N, 3, s, s) -> (N, 3, 128, 128) in [0, 1]."""

    def __init__(
        self,
        scale_in: int = 16,
        scale_out: int = 128,
        channels: int = 48,
        blocks: int = 4,
        upsample: str = "pixelshuffle",
        base: str = "bilinear",
    ) -> None:
        up = UPSAMPLERS[upsample]

        def stage(cin: int, cout: int) -> list[nn.Module]:
            return [up(cin, cout), conv(cout, cout), nn.LeakyReLU(0.2, inplace=True)]

        super().__init__(scale_in, scale_out, channels, blocks, stage, min_channels=8, base=base)
