"""Step 2 training: the face prior MR (64 px) -> latent (C x 16 x 16) -> HR (128 px), on clean faces.

Losses: L1 + spectral (FFT) reconstruction of the HR face from a softened, noisy MR face (step
1's outputs are soft; the prior must not need a perfect MR), a small code-norm penalty, and, for
the quality variant, a non-saturating adversarial loss (after a warm-up) on three kinds of
decodes (the fast variant's residual prior is trained without the critic: on 2 shared CPU cores
it would take half of every step, and the MR skips, not the code, carry its fidelity):

* the reconstruction itself (sharpness),
* codes mixed between two faces of the batch, z_a + t (z_b - z_a),
* codes pulled toward the running mean code, z + t (mean - z).

The last two have no target: the critic alone asks that every point on those straight lines
decodes to a plausible face, which is what makes engines/latent.py's interpolation (toward the
mean, across a track's frames) safe. Gaussian noise on the codes (the `prior_shape` part of the
latent, the part the runtime interpolates) during reconstruction makes the decoder smooth
around every training code as well.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engines.arch import build
from engines.arch.disc_arch import PatchDiscriminator
from engines.data.datasets import load_hr, split_note
from engines.data.degrade import degrade
from engines.train import configs as C
from engines.train.card import write_card
from engines.train.common import (
    Checkpoint,
    StepLoop,
    Timer,
    TrainOptions,
    area,
    d_loss,
    fft_loss,
    g_loss,
    param_count,
    random_blur,
    set_lr,
    setup_torch,
    to_tensor,
)
from engines.train.export import export_step2
from engines.train.step1 import _device_name, _flip_by, step2_state, train_pool

W_FFT, W_ADV, W_CODE = 0.1, 0.02, 1e-4
CODE_NOISE = 0.1
ADV_START = 0.3
MR_BLUR, MR_NOISE = 1.0, 0.02
CASCADE_REFRESH = 100


@torch.no_grad()
def latent_mean(prior: Any, faces: np.ndarray, device: torch.device, batch: int = 256) -> np.ndarray:
    """Mean code of the clean MR faces of the training set (`prior` a step 2 prior module)."""
    prior.eval()
    total: torch.Tensor | None = None
    code_ch = prior.prior_shape[0]
    for i in range(0, len(faces), batch):
        z = prior.encode(area(to_tensor(faces[i : i + batch], device), C.MR_SIZE))[:, :code_ch]
        z = z.double().sum(0)
        total = z if total is None else total + z
    if total is None:
        raise ValueError("no faces to average")
    return (total / len(faces)).float().cpu().numpy()


class Cascade:
    """Step 1 restorers (one per scale, frozen), read from their training checkpoints and
    re-read as those runs save newer ones: step 2 then learns on the MR faces step 1 really
    makes, not only on softened downscales. Runs that have no checkpoint yet are skipped.

    Step 1 sees the LR faces it was trained on: half synthetic degradations, half the video
    pool's coded frames (`pools`, per scale, rows = the HR training faces) where one is given,
    so step 2 learns what step 1 leaves behind on both."""

    def __init__(
        self,
        ckpt_dir: Path,
        variant: str,
        device: torch.device,
        pools: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        self.ckpt_dir, self.variant, self.device, self.pools = ckpt_dir, variant, device, pools
        self.nets: dict[int, torch.nn.Module] = {}
        self.stamps: dict[int, float] = {}

    def refresh(self) -> None:
        for scale in sorted(C.SCALES):
            path = Checkpoint(self.ckpt_dir, C.name("step1", scale, self.variant)).path
            if not path.exists() or self.stamps.get(scale) == path.stat().st_mtime:
                continue
            state = torch.load(path, map_location=self.device, weights_only=False)
            net = build(C.STEP1_ARCH, C.step1_kwargs(scale, self.variant)).to(self.device)
            net.load_state_dict(state["modules"]["net"])
            self.nets[scale] = net.eval().requires_grad_(False)
            self.stamps[scale] = path.stat().st_mtime

    @torch.no_grad()
    def mr(
        self, hr_np: np.ndarray, rows: np.ndarray, flip: np.ndarray, rng: np.random.Generator
    ) -> torch.Tensor | None:
        """Step 1's MR faces for a batch of HR faces (training rows `rows`, mirrored where `flip`;
        one random scale), or None if no step 1 is loaded."""
        if not self.nets:
            return None
        scale = list(self.nets)[int(rng.integers(len(self.nets)))]
        size = C.SCALES[scale]
        lr = degrade(hr_np, size, rng)
        if self.pools is not None:
            pool = self.pools(size)
            half = len(rows) // 2
            coded = pool[rng.integers(0, len(pool), len(rows) - half), rows[half:], -1]
            lr[half:] = _flip_by(coded, flip[half:])
        return self.nets[scale](to_tensor(lr, self.device))


def train_step2(
    variant: str, opts: TrainOptions, cascade: float = 0.0, init_from: Path | None = None
) -> dict[str, Any]:
    """`cascade`: the share of every batch's MR inputs that step 1 makes (see `Cascade`); the
    rest are softened downscales (what a natively 64 px face looks like). `init_from` is a
    weights folder whose step 2 this run starts from (a fine-tune, with its own schedule)."""
    if not 0.0 <= cascade <= 1.0:
        raise ValueError(f"cascade must be a share in 0..1, got {cascade}")
    C.check_choice(8, variant)
    device = setup_torch(opts)
    rng = np.random.default_rng(opts.seed)
    gen = torch.Generator(device=device).manual_seed(opts.seed)
    hr_all = load_hr(
        "train", opts.cache, opts.data, datasets=opts.dataset, limit=opts.limit, finder=opts.finder
    )
    kw = C.step2_kwargs(variant)
    arch = C.step2_arch(variant)
    w_adv = W_ADV if variant == "quality" else 0.0
    prior: Any = build(arch, kw).to(device)  # its parts and shapes are attributes torch cannot type
    if init_from is not None:
        prior.load_state_dict(step2_state(init_from, variant, device))
    code_ch = prior.prior_shape[0]
    disc = PatchDiscriminator(16, downs=3, max_channels=64, stem=False).to(device)
    opt = torch.optim.Adam(prior.parameters(), lr=opts.lr, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=opts.lr, betas=(0.5, 0.99))
    modules: dict[str, torch.nn.Module | torch.optim.Optimizer] = {
        "prior": prior,
        "disc": disc,
        "opt": opt,
        "opt_d": opt_d,
    }
    name = C.name("step2", None, variant)
    ckpt = Checkpoint(opts.ckpt_dir, name)
    zmean = torch.zeros(prior.prior_shape, device=device)
    start, elapsed = 0, 0.0
    if opts.resume and ckpt.exists():
        start, elapsed, extra = ckpt.load(modules, rng, device)
        zmean = extra["zmean"].to(device)
        gen.set_state(extra["gen"])
    timer = Timer(elapsed)

    def save(done: int) -> None:
        ckpt.save(done, modules, rng, timer.elapsed, {"zmean": zmean.cpu(), "gen": gen.get_state()})

    loop = StepLoop(opts, name, start, timer, save)
    pools = functools.cache(lambda size: train_pool(hr_all, size, opts))
    step1 = Cascade(opts.ckpt_dir, variant, device, pools) if cascade > 0 else None
    n_step1 = round(opts.batch * cascade)
    for step, t in loop:
        set_lr(opt, opts.lr, t)
        prior.train()
        rows = rng.integers(0, len(hr_all), opts.batch)
        flip = rng.random(opts.batch) < 0.5
        hr_np = _flip_by(hr_all[rows], flip)
        hr = to_tensor(hr_np, device)
        mr = area(hr, C.MR_SIZE)
        sigma = torch.rand(opts.batch, 1, 1, 1, generator=gen, device=device) * MR_NOISE
        mr_in = (
            random_blur(mr, gen, MR_BLUR) + sigma * torch.randn(mr.shape, generator=gen, device=device)
        ).clamp(0, 1)
        if step1 is not None:
            if step % CASCADE_REFRESH == 0 or step == start:
                step1.refresh()
            keep = opts.batch - n_step1
            from_step1 = step1.mr(hr_np[keep:], rows[keep:], flip[keep:], rng) if n_step1 else None
            if from_step1 is not None:
                mr_in = torch.cat([mr_in[:keep], from_step1])
        latent = prior.encode(mr_in)
        z, skip = latent[:, :code_ch], latent[:, code_ch:]
        zmean.mul_(0.99).add_(0.01 * z.detach().mean(0))
        noisy = z + CODE_NOISE * z.detach().std() * torch.randn(z.shape, generator=gen, device=device)
        out = prior.decode(torch.cat([noisy, skip], dim=1))
        rec = F.l1_loss(out, hr) + W_FFT * fft_loss(out, hr)
        loss = rec + W_CODE * z.pow(2).mean()
        parts = {"rec": rec}
        mixed = None
        if w_adv > 0 and t >= ADV_START:
            mix = torch.rand(opts.batch, 1, 1, 1, generator=gen, device=device)
            half = opts.batch // 2
            z_mix = torch.cat(
                [
                    z[:half] + mix[:half] * (z.roll(1, 0)[:half] - z[:half]),
                    z[half:] + mix[half:] * (zmean - z[half:]),
                ]
            )
            mixed = prior.decode(torch.cat([z_mix, skip], dim=1))
            adv = g_loss(disc(out)) + g_loss(disc(mixed))
            loss = loss + w_adv * adv
            parts["adv"] = adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if mixed is not None:
            fakes = torch.cat([out.detach(), mixed.detach()])
            ld = d_loss(disc(hr), disc(fakes))
            opt_d.zero_grad(set_to_none=True)
            ld.backward()
            opt_d.step()
            parts["d"] = ld
        loop.record(parts)
    if loop.interrupted:
        return {"stopped": True, "start": start, "steps": loop.done}
    mean = latent_mean(prior, hr_all, device)
    folder = export_step2(prior, arch, kw, mean, opts.out, name)
    info = {
        "kind": "step2",
        "arch": arch,
        "arch_kwargs": kw,
        "gmac": round(C.gmac(arch, kw), 4),
        "params": param_count(prior),
        "command": opts.command,
        "device": _device_name(device),
        "seed": opts.seed,
        "steps": loop.done,
        "train_seconds": round(timer.elapsed, 1),
        "final_losses": loop.losses,
        "trained": True,
        "start": start,
        "data": f"{len(hr_all)} aligned {opts.dataset} training faces at 128 px; "
        f"MR input = area downscale to 64 px, softened (Gaussian blur sigma <= {MR_BLUR}) "
        f"and noisy (sigma <= {MR_NOISE})"
        + (
            f"; with --cascade {cascade:g}, that share of each batch is step 1's output (x4/x8/x16 "
            "training checkpoints, frozen, re-read every 100 steps) on LR faces half synthetically "
            "degraded, half from the video-coded pool"
            if cascade > 0
            else ""
        )
        + (f"; fine-tuned from {init_from}" if init_from is not None else ""),
        "split": split_note(opts.dataset),
        "summary": f"Step 2 of the two-step FSR, variant `{variant}`: 64 px MR face -> latent "
        f"{list(prior.latent_shape)} -> 128 px HR face. latent_mean.npy is the mean code "
        f"({list(prior.prior_shape)}, the part the runtime interpolates) of the clean training MR faces."
        + (" Residual over bicubic(MR), the decoder reads the MR face's features." if w_adv == 0 else ""),
    }
    write_card(folder, name, info, dataset=opts.dataset)
    return info
