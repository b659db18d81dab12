"""Building blocks shared by the FSR networks: plain 3x3 convolutions only, so that ONNX Runtime
on CPU, TensorRT and PyTorch all run them well."""

from __future__ import annotations

import torch
from torch import nn


def conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


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
