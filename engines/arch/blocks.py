"""Building blocks shared by the FSR networks: plain 3x3 convolutions only, so that ONNX Runtime
on CPU, TensorRT and PyTorch all run them well."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def unit_range(x: torch.Tensor, training: bool) -> torch.Tensor:
    """Images leave every network clamped to [0, 1]. In training the clamp passes gradients
    straight through: a hard clamp gives saturated pixels zero gradient, and one large step can
    then leave a net stuck on a saturated output (seen: step 1 x8 quality at lr 2e-3, L1 0.09 ->
    0.43 at step ~1000, never recovered). Inference and ONNX export see a plain clamp."""
    clamped = x.clamp(0.0, 1.0)
    return x + (clamped - x).detach() if training else clamped


class ResBlock(nn.Module):
    """conv-act-conv with an identity skip; residual scale 1 keeps tiny nets easy to train."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1 = conv(ch, ch)
        self.c2 = conv(ch, ch)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(self.act(self.c1(x)))


class Up2(nn.Module):
    """x2 upsampling by sub-pixel convolution (PixelShuffle). Its four sub-pixel phases have
    their own weights, which shows as a 2 px checkerboard unless training evens them out; kept
    for the weights trained with it (manifest `upsample` "pixelshuffle"), new ones use `UpConv`."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.c = conv(cin, cout * 4)
        self.ps = nn.PixelShuffle(2)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.ps(self.c(x)))


class UpConv(nn.Module):
    """x2 upsampling as a bilinear resize, then a 3x3 conv at the new size: every output pixel
    gets the same weights, so a flat input stays flat (no checkerboard, tested). It costs the
    same MACs as the sub-pixel conv of `Up2` (one conv of cin x cout at 4x the pixels)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.c = conv(cin, cout)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.c(upsample(x, 2 * x.shape[-1], "bilinear")))


UPSAMPLERS: dict[str, type[nn.Module]] = {"pixelshuffle": Up2, "resize": UpConv}


def upsample(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Resize to size x size (bilinear or bicubic, half-pixel centres as OpenCV's)."""
    return F.interpolate(x, size=(size, size), mode=mode, align_corners=False)


def zero_conv(cin: int, cout: int) -> nn.Conv2d:
    """The last conv of a residual branch, zero at init: the untrained net is exactly its base
    interpolation, and training can only add to it."""
    c = conv(cin, cout)
    nn.init.zeros_(c.weight)
    if c.bias is not None:
        nn.init.zeros_(c.bias)
    return c


class ResidualUpscaler(nn.Module):
    """LR face -> larger face as a residual over its `base` upscale (bilinear or bicubic; the
    residual's last conv starts at zero), so an untrained or uncertain net is that
    interpolation. Most layers run at the LR size (cheap); each x2 stage narrows the channels
    so cost stays flat as resolution grows. Step 1 and the one-step ablation differ only in
    what a stage holds (`stage(cin, cout)`) and the narrowest width.

    `frames` > 1 fuses a track's last frames, stacked on the channels oldest first, registered
    to the newest (which the output restores and the base interpolates): only the first conv
    sees them, so fusion adds that layer's cost alone.

    Shapes: (N, 3 * frames, scale_in, scale_in) in [0, 1] -> (N, 3, scale_out, scale_out) in [0, 1].
    """

    def __init__(
        self,
        scale_in: int,
        scale_out: int,
        channels: int,
        blocks: int,
        stage: Callable[[int, int], list[nn.Module]],
        min_channels: int,
        base: str = "bilinear",
        frames: int = 1,
    ) -> None:
        super().__init__()
        if base not in ("bilinear", "bicubic"):
            raise ValueError(f"base must be bilinear or bicubic, got {base!r}")
        self.base = base
        ratio = scale_out // scale_in
        if scale_in * ratio != scale_out or ratio & (ratio - 1) or ratio < 2:
            raise ValueError(f"scale_out/scale_in must be a power of two >= 2, got {scale_in} -> {scale_out}")
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.scale_in, self.scale_out, self.frames = scale_in, scale_out, frames
        self.head = conv(3 * frames, channels)
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        ups: list[nn.Module] = []
        ch = channels
        for _ in range(int(math.log2(ratio))):
            nxt = max(min_channels, ch // 2)
            ups += stage(ch, nxt)
            ch = nxt
        self.up = nn.Sequential(*ups)
        self.tail = zero_conv(ch, 3)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        base = upsample(lr[:, -3:], self.scale_out, self.base)
        x = self.head(lr)
        x = x + self.body(x)
        return unit_range(base + self.tail(self.up(x)), self.training)
