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
    """x2 upsampling by sub-pixel convolution (PixelShuffle): cheaper than a conv after resize."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.c = conv(cin, cout * 4)
        self.ps = nn.PixelShuffle(2)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.ps(self.c(x)))


class ResidualUpscaler(nn.Module):
    """LR face -> larger face as a residual over its bilinear upscale, so an untrained or uncertain
    net degrades gracefully to a smooth image. Most layers run at the LR size (cheap); each x2
    stage narrows the channels so cost stays flat as resolution grows. Step 1 and the one-step
    ablation differ only in what a stage holds (`stage(cin, cout)`) and the narrowest width.

    Shapes: (N, 3, scale_in, scale_in) in [0, 1] -> (N, 3, scale_out, scale_out) in [0, 1].
    """

    def __init__(
        self,
        scale_in: int,
        scale_out: int,
        channels: int,
        blocks: int,
        stage: Callable[[int, int], list[nn.Module]],
        min_channels: int,
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
            nxt = max(min_channels, ch // 2)
            ups += stage(ch, nxt)
            ch = nxt
        self.up = nn.Sequential(*ups)
        self.tail = conv(ch, 3)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(lr, size=(self.scale_out, self.scale_out), mode="bilinear", align_corners=False)
        x = self.head(lr)
        x = x + self.body(x)
        return unit_range(base + self.tail(self.up(x)), self.training)
