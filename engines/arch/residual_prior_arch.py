"""Step 2 as a residual face prior: MR (64 px) -> [prior code | MR] -> HR (128 px) = bicubic(MR)
+ a residual drawn from the code and the MR face's own features.

The older `Step2Prior` redrew the whole face from a 16 x 16 code, capping fidelity at what the
bottleneck kept. Here the decoder also reads the MR face (GFPGAN/GPEN-style skip features at 32
and 64 px), and the output is a residual over bicubic whose last conv starts at zero: untrained,
step 2 is exactly bicubic, and training can only add. The code still carries what the prior
adds, and it is what the runtime interpolates (toward the prior's mean, across a track).

The backends run single-input graphs, so the encoder's output packs both halves on one 16 x 16
grid: channels [0, code_ch) are the code, the next 48 are the MR face itself, space-to-depth by
4 (lossless). `prior_shape` names the code part; engines/latent.py interpolates only that part.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.arch.blocks import ResBlock, UpConv, conv, unit_range, upsample, zero_conv

MR_SIZE, GRID = 64, 16
PACK = MR_SIZE // GRID
MR_CH = 3 * PACK * PACK


class ResidualEncoder(nn.Module):
    """(N, 3, 64, 64) in [0, 1] -> (N, code_ch + 48, 16, 16): the code, then the packed MR."""

    def __init__(self, code_ch: int = 16, channels: int = 32, blocks: int = 1) -> None:
        super().__init__()
        c1 = max(8, channels // 2)
        self.net = nn.Sequential(
            conv(3, c1, stride=2),
            nn.LeakyReLU(0.2, inplace=True),
            conv(c1, channels, stride=2),
            nn.LeakyReLU(0.2, inplace=True),
            *[ResBlock(channels) for _ in range(blocks)],
            conv(channels, code_ch),
        )
        self.pack = nn.PixelUnshuffle(PACK)

    def forward(self, mr: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net(mr * 2.0 - 1.0), self.pack(mr)], dim=1)


class ResidualDecoder(nn.Module):
    """(N, code_ch + 48, 16, 16) -> (N, 3, 128, 128) in [0, 1].

    code 16 px -> `channels` -> resblocks -> x2 (resize-conv) -> fused with MR features at 32 px
    -> resblock -> x2 -> plus MR features at 64 px -> conv -> bilinear x2 + zero-init conv = the
    residual over bicubic(MR). All upsampling is resize-then-conv (no checkerboard)."""

    def __init__(
        self, code_ch: int = 16, channels: int = 32, mid: int = 24, fine: int = 16, blocks: int = 1
    ) -> None:
        super().__init__()
        self.code_ch = code_ch
        self.unpack = nn.PixelShuffle(PACK)
        act = nn.LeakyReLU(0.2, inplace=True)
        self.f64 = nn.Sequential(conv(3, fine), act)
        self.f32 = nn.Sequential(conv(fine, mid, stride=2), nn.LeakyReLU(0.2, inplace=True))
        self.code = nn.Sequential(
            conv(code_ch, channels),
            nn.LeakyReLU(0.2, inplace=True),
            *[ResBlock(channels) for _ in range(blocks)],
            UpConv(channels, mid),
        )
        self.fuse32 = nn.Sequential(conv(2 * mid, mid), nn.LeakyReLU(0.2, inplace=True), ResBlock(mid))
        self.up64 = UpConv(mid, fine)
        self.fuse64 = nn.Sequential(conv(fine, fine), nn.LeakyReLU(0.2, inplace=True))
        self.tail = zero_conv(fine, 3)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        code, mr = packed[:, : self.code_ch], self.unpack(packed[:, self.code_ch :])
        f64 = self.f64(mr * 2.0 - 1.0)
        x = self.fuse32(torch.cat([self.code(code), self.f32(f64)], dim=1))
        x = self.fuse64(self.up64(x) + f64)
        out = 2 * MR_SIZE
        return unit_range(
            upsample(mr, out, "bicubic") + self.tail(upsample(x, out, "bilinear")), self.training
        )


class ResidualPrior(nn.Module):
    """Encoder + decoder, exported as two ONNX graphs ("mr" -> "latent", "latent" -> "hr").

    Args: code_ch (channels of the 16 x 16 code), enc_channels, dec_channels (code path width),
    mid / fine (widths at 32 / 64 px), blocks (residual blocks at 16 px in each half).
    `out_size` is fixed at 128 (x2 of the 64 px MR face)."""

    def __init__(
        self,
        code_ch: int = 16,
        enc_channels: int = 32,
        dec_channels: int = 32,
        mid: int = 24,
        fine: int = 16,
        blocks: int = 1,
        out_size: int = 2 * MR_SIZE,
    ) -> None:
        super().__init__()
        if out_size != 2 * MR_SIZE:
            raise ValueError(f"ResidualPrior makes {2 * MR_SIZE} px faces, got out_size {out_size}")
        self.code_ch, self.out_size = code_ch, out_size
        self.encoder = ResidualEncoder(code_ch, enc_channels, blocks)
        self.decoder = ResidualDecoder(code_ch, dec_channels, mid, fine, blocks)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.code_ch + MR_CH, GRID, GRID)

    @property
    def prior_shape(self) -> tuple[int, int, int]:
        return (self.code_ch, GRID, GRID)

    def encode(self, mr: torch.Tensor) -> torch.Tensor:
        return self.encoder(mr)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def forward(self, mr: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(mr))
