"""Checkerboard: the energy at an upsampler's period in the spectrum of the output for a flat
input. Resize-then-conv (what the fast models use) gives a flat face a flat output; PixelShuffle
with independent sub-pixel weights does not (the control that shows the test can fail)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from engines.arch import build
from engines.arch.blocks import Up2, UpConv
from engines.train import configs as C


def period_energy(img: torch.Tensor, periods: tuple[int, ...] = (2, 4, 8)) -> float:
    """Spectral energy at the frequencies of `periods` (along x, y and both) over the DC energy:
    the squared contrast of a grid pattern relative to the image's brightness. The interior only
    (the borders see the convolutions' zero padding, which is no grid)."""
    a = img.detach().double().numpy().mean(axis=(0, 1))
    m = a.shape[0] // 8
    a = a[m:-m, m:-m]
    spec = np.abs(np.fft.fft2(a)) ** 2
    n = a.shape[0]
    bins = {n // p for p in periods if n % p == 0}
    hit = sum(spec[k, 0] + spec[0, k] + spec[k, k] for k in bins)
    return float(hit / spec[0, 0])


STD = 0.05
"""Small enough that no layer saturates the output clamp (a saturated image is trivially flat)."""


def _randomise(net: nn.Module, seed: int) -> nn.Module:
    """Untrained residual nets output their (flat) interpolation; random weights everywhere
    (zero-init tails included) show what the layer structure itself does to a flat input."""
    torch.manual_seed(seed)
    for p in net.parameters():
        nn.init.normal_(p, std=STD)
    return net.eval()


def test_resize_conv_has_no_period_energy_and_pixelshuffle_does() -> None:
    flat = torch.full((1, 8, 32, 32), 0.5)
    with torch.no_grad():
        resized = _randomise(UpConv(8, 4), 1)(flat)
        shuffled = _randomise(Up2(8, 4), 1)(flat)
    assert period_energy(resized) < 1e-12
    assert period_energy(shuffled) > 1e-3


@pytest.mark.parametrize("scale", sorted(C.SCALES))
def test_fast_models_keep_a_flat_face_flat(scale: int) -> None:
    s = C.SCALES[scale]
    step1 = _randomise(build(C.STEP1_ARCH, C.step1_kwargs(scale, "fast")), scale)
    step2 = _randomise(build(C.step2_arch("fast"), C.step2_kwargs("fast")), 7)
    with torch.no_grad():
        mr = step1(torch.full((1, 3, s, s), 0.4))
        hr = step2(torch.full((1, 3, 64, 64), 0.4))
    assert 0.05 < float(mr.mean()) < 0.95 and 0.05 < float(hr.mean()) < 0.95  # not saturated
    # Not exactly 0: the zero padding's border effect reaches the middle of an 8-16 px input
    # through the LR layers, and that smooth field is then interpolated. PixelShuffle: 1e-3..1e-2.
    assert period_energy(mr) < 1e-5
    assert period_energy(hr) < 1e-8


@pytest.mark.parametrize("scale", sorted(C.SCALES))
def test_the_old_pixelshuffle_step1_fails_the_same_check(scale: int) -> None:
    s = C.SCALES[scale]
    kw = {**C.step1_kwargs(scale, "fast"), "upsample": "pixelshuffle"}
    step1 = _randomise(build(C.STEP1_ARCH, kw), scale)
    with torch.no_grad():
        mr = step1(torch.full((1, 3, s, s), 0.4))
    assert 0.05 < float(mr.mean()) < 0.95
    assert period_energy(mr) > 1e-4
