"""Step 2 of the two-step FSR: the face prior MR (64 px) -> latent -> HR (128 px).

The latent is spatial, (latent_ch, 16, 16): a global vector bottleneck would throw away the
identity detail the MR face carries, while a 16 x 16 map keeps where the eyes, mouth and
hair edges are. It is trained (engines/train/step2.py) with noise added to the codes and with
decoded mixes of two faces' codes and of a code with the mean code judged by the critic, so
straight lines in this space (toward the mean, across the frames of a track) decode to
plausible faces: the interpolation of engines/latent.py is then meaningful.

No skip connection bypasses the latent: everything the decoder draws passes through the code
that the runtime interpolates.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engines.arch.blocks import ResBlock, Up2, conv, unit_range


class Step2Encoder(nn.Module):
    """(N, 3, 64, 64) in [0, 1] -> latent (N, latent_ch, 16, 16)."""

    def __init__(self, latent_ch: int = 16, channels: int = 32, blocks: int = 1) -> None:
        super().__init__()
        c1, c2 = max(16, channels // 2), channels
        self.net = nn.Sequential(
            conv(3, c1),
            nn.LeakyReLU(0.2, inplace=True),
            conv(c1, c2, stride=2),
            nn.LeakyReLU(0.2, inplace=True),
            conv(c2, c2 * 3 // 2, stride=2),
            nn.LeakyReLU(0.2, inplace=True),
            *[ResBlock(c2 * 3 // 2) for _ in range(blocks)],
            conv(c2 * 3 // 2, latent_ch),
        )

    def forward(self, mr: torch.Tensor) -> torch.Tensor:
        return self.net(mr * 2.0 - 1.0)


class Step2Decoder(nn.Module):
    """latent (N, latent_ch, 16, 16) -> (N, 3, out_size, out_size) in [0, 1].

    One x2 PixelShuffle stage per doubling from 16 px: 3 stages to 128 px; `out_size` 256 or
    512 (x32 / x64 from an 8 px face) adds stages, each halving the width (min 8).
    """

    def __init__(self, latent_ch: int = 16, channels: int = 48, blocks: int = 1, out_size: int = 128) -> None:
        super().__init__()
        stages = int(math.log2(out_size // 16))
        if 16 * 2**stages != out_size:
            raise ValueError(f"out_size must be 16 * 2^k, got {out_size}")
        layers: list[nn.Module] = [conv(latent_ch, channels), nn.LeakyReLU(0.2, inplace=True)]
        layers += [ResBlock(channels) for _ in range(blocks)]
        ch = channels
        for i in range(stages - 1):
            nxt = max(8, ch * 2 // 3 if i == 0 else ch // 2)
            layers += [Up2(ch, nxt), conv(nxt, nxt), nn.LeakyReLU(0.2, inplace=True)]
            ch = nxt
        layers += [conv(ch, 3 * 4), nn.PixelShuffle(2)]
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return unit_range((self.net(latent) + 1.0) * 0.5, self.training)


class Step2Prior(nn.Module):
    """Encoder + decoder; `forward(mr)` = decode(encode(mr)). Exported as two ONNX graphs so the
    runtime can interpolate the latent in between.

    Args:
        latent_ch: channels of the 16 x 16 latent.
        enc_channels / dec_channels: widths; blocks: residual blocks at 16 px in each half.
        out_size: HR side (128 shipped).
    """

    def __init__(
        self,
        latent_ch: int = 16,
        enc_channels: int = 32,
        dec_channels: int = 48,
        blocks: int = 1,
        out_size: int = 128,
    ) -> None:
        super().__init__()
        self.latent_ch, self.out_size = latent_ch, out_size
        self.encoder = Step2Encoder(latent_ch, enc_channels, blocks)
        self.decoder = Step2Decoder(latent_ch, dec_channels, blocks, out_size)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_ch, 16, 16)

    @property
    def prior_shape(self) -> tuple[int, int, int]:
        """The part of the latent the runtime interpolates: all of it here."""
        return self.latent_shape

    def encode(self, mr: torch.Tensor) -> torch.Tensor:
        return self.encoder(mr)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def forward(self, mr: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(mr))
