"""FSR network shapes, the MAC counter and the CPU budget of the default model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engines.arch import build, count_macs
from engines.arch.onestep_arch import OneStep
from engines.arch.residual_prior_arch import ResidualPrior
from engines.arch.step1_arch import DegradationGenerator, Step1Restorer
from engines.arch.step2_arch import Step2Decoder
from engines.train import configs as C


@pytest.mark.parametrize("variant", C.VARIANTS)
@pytest.mark.parametrize("scale", sorted(C.SCALES))
def test_step1_and_onestep_shapes(scale: int, variant: str) -> None:
    s = C.SCALES[scale]
    lr = torch.rand(2, 3, s, s)
    with torch.no_grad():
        mr = build(C.STEP1_ARCH, C.step1_kwargs(scale, variant)).eval()(lr)
        hr = build(C.ONESTEP_ARCH, C.onestep_kwargs(scale, variant)).eval()(lr) if variant == "fast" else None
        fake = DegradationGenerator(**C.degrade_kwargs(scale))(
            torch.rand(2, 3, 64, 64), torch.randn(2, 1, s, s)
        )
    assert mr.shape == (2, 3, 64, 64)
    assert 0.0 <= float(mr.min()) and float(mr.max()) <= 1.0
    assert hr is None or hr.shape == (2, 3, 128, 128)
    assert fake.shape == (2, 3, s, s)


@pytest.mark.parametrize("variant", C.VARIANTS)
def test_step2_latent_and_output_shapes(variant: str) -> None:
    prior = build(C.step2_arch(variant), C.step2_kwargs(variant)).eval()
    z = prior.encode(torch.rand(3, 3, 64, 64))
    assert tuple(z.shape) == (3, *prior.latent_shape)
    assert prior.latent_shape[1:] == prior.prior_shape[1:] == (16, 16)
    assert prior.prior_shape[0] <= prior.latent_shape[0]
    assert prior.decode(z).shape == (3, 3, 128, 128)


def test_untrained_residual_nets_are_exactly_their_interpolation() -> None:
    """Zero-init residual branches: before training, step 1 is bicubic to 64 px and step 2 is
    bicubic to 128 px, so training starts at bicubic and can only add."""
    mr = torch.rand(2, 3, 64, 64)
    lr = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        hr = ResidualPrior().eval()(mr)
        mid = build(C.STEP1_ARCH, C.step1_kwargs(8, "fast")).eval()(lr)
    bic = torch.nn.functional.interpolate
    torch.testing.assert_close(hr, bic(mr, size=(128, 128), mode="bicubic", align_corners=False).clamp(0, 1))
    torch.testing.assert_close(mid, bic(lr, size=(64, 64), mode="bicubic", align_corners=False).clamp(0, 1))


def test_residual_prior_latent_packs_the_mr_face_losslessly() -> None:
    """The code comes first; the MR face follows, space-to-depth, so the decoder sees its pixels."""
    prior = ResidualPrior().eval()
    mr = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        z = prior.encode(mr)
    code_ch = prior.prior_shape[0]
    torch.testing.assert_close(torch.nn.functional.pixel_shuffle(z[:, code_ch:], 4), mr)


def test_higher_factors_are_a_configuration() -> None:
    """x32 / x64 to 256 / 512 px: step 1 from 8 px to 64 px, then a decoder with more stages."""
    z = torch.randn(1, 16, 16, 16)
    assert Step2Decoder(16, 48, 1, out_size=256)(z).shape == (1, 3, 256, 256)
    assert Step1Restorer(scale_in=8, scale_out=64)(torch.rand(1, 3, 8, 8)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="out_size"):
        Step2Decoder(out_size=200)
    with pytest.raises(ValueError, match="power of two"):
        Step1Restorer(scale_in=24, scale_out=64)
    with pytest.raises(ValueError, match="power of two"):
        OneStep(scale_in=48)


def test_count_macs_counts_convolutions_exactly() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    assert count_macs(net, torch.zeros(1, 3, 10, 10)) == 100 * 8 * 27 + 100 * 4 * 8


def test_default_model_fits_the_cpu_budget() -> None:
    step1 = C.gmac(C.STEP1_ARCH, C.step1_kwargs(8, "fast"))
    step2 = C.gmac(C.step2_arch("fast"), C.step2_kwargs("fast"))
    assert step1 + step2 <= C.FAST_BUDGET_GMAC
    assert step2 > 0.03 and step1 > 0.02  # both steps do real work
    # quality is the larger variant
    assert C.gmac(C.step2_arch("quality"), C.step2_kwargs("quality")) > 2 * step2


@pytest.mark.parametrize("scale", sorted(C.SCALES))
def test_onestep_ablation_costs_no_more_than_two_steps(scale: int) -> None:
    two = C.gmac(C.STEP1_ARCH, C.step1_kwargs(scale, "fast")) + C.gmac(
        C.step2_arch("fast"), C.step2_kwargs("fast")
    )
    one = C.gmac(C.ONESTEP_ARCH, C.onestep_kwargs(scale, "fast"))
    assert 0.75 * two <= one <= two


def test_build_rejects_foreign_classes() -> None:
    with pytest.raises(ValueError, match="engines.arch"):
        build("os.system", {})
    with pytest.raises(ValueError, match="no class"):
        build("engines.arch.step1_arch.Nope", {})
    assert isinstance(build(C.step2_arch("fast"), C.step2_kwargs("fast")), ResidualPrior)


def test_saturated_outputs_still_get_gradients_in_training_only() -> None:
    from engines.arch.blocks import unit_range

    x = torch.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    y = unit_range(x, training=True)
    assert y.tolist() == [0.0, 0.5, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]  # a hard clamp gives [0, 1, 0]: a stuck net
    assert unit_range(x, training=False).tolist() == [0.0, 0.5, 1.0]
