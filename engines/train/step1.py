"""Step 1 training: degradation learning against real tiny faces, then restoration on its pairs.

Per step, on a batch of HR training faces (MR = area downscale to 64 px):

* a `DegradationGenerator` G turns MR faces into LR faces; a patch critic D tells them from REAL
  tiny faces harvested from videos (unpaired). G is also held to the MR face's low frequencies
  (it may blur, add noise and blocking, not change who it is) and to a cycle
  real LR -> restorer -> G -> real LR (the CycleGAN half that runs through real data);
* the restorer R learns LR -> MR on pairs, every batch split evenly between the degradation
  sources in use: synthetic (engines/data/degrade.py), real video coding of whole mosaic frames
  (engines/data/video_degrade.py, a cached pool), and G's output once the first quarter of
  training (bootstrap, while G is still learning) is over.

The same loop trains the one-step ablation (R: LR -> 128 px directly; its cycle downsamples to
64 px before G) and the synthetic-only ablation (no G, no D). Camera adaptation (--adapt) is
this loop started from shipped weights with the camera's faces as the real set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engines.arch import build
from engines.arch.disc_arch import PatchDiscriminator
from engines.data.datasets import load_hr, split_note
from engines.data.degrade import degrade, have_pyav
from engines.data.harvest import load_real_lr
from engines.data.real_tracks import load_real_tracks
from engines.data.video_degrade import POOL_FRAMES, jitter_faces, load_pool
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
    set_lr,
    setup_torch,
    to_tensor,
)
from engines.train.export import export_restorer

W_FFT, W_ADV, W_CYCLE, W_LOWFREQ = 0.1, 0.05, 1.0, 1.0
W_THROUGH = 1.0
REAL_SHARE = 0.25
"""Share of a batch from real track histories (--real-tracks)."""
BOOTSTRAP = 0.25


def train_pool(hr: np.ndarray, size: int, opts: TrainOptions) -> np.ndarray:
    """The video-coded pool of the training faces `hr` at `size` px, cached under a tag that
    names the datasets and the limit (engines.data.video_degrade.load_pool)."""
    tag = f"{opts.dataset.replace(',', '+')}_train" + (f"_limit{opts.limit}" if opts.limit else "")
    return load_pool(hr, size, opts.cache, tag)


def frozen_step2(weights: Path, variant: str, device: torch.device) -> torch.nn.Module:
    """The step 2 of a weights folder, frozen: step 1 trained through it learns the MR faces that
    this prior turns into the best HR faces, not only MR faces close to a downscale (the split
    at MR otherwise costs the two-step model what a one-step model learns end to end)."""
    prior = build(C.step2_arch(variant), C.step2_kwargs(variant)).to(device)
    prior.load_state_dict(step2_state(weights, variant, device))
    return prior.eval().requires_grad_(False)


def step2_state(weights: Path, variant: str, device: torch.device) -> dict[str, torch.Tensor]:
    """The state dict of a weights folder's step 2 (its exported model.pt)."""
    state: dict[str, torch.Tensor] = torch.load(
        weights / C.name("step2", None, variant) / "model.pt", map_location=device
    )
    return state


def _flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _flip_by(images, rng.random(len(images)) < 0.5)


def _flip_by(images: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Mirror the rows where `flip` is set (pairs of HR and LR crops share one mask); rows may
    be images (N, H, W, 3) or a track's frames (N, K, H, W, 3)."""
    images = images.copy()
    images[flip] = images[flip][..., ::-1, :]
    return images


def _history(
    hr: np.ndarray, newest: np.ndarray, frames: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Synthetic track histories (N, frames, s, s, 3) ending in `newest`: each older frame the
    same HR face off by the aligner's jitter, degraded on its own (fresh blur, noise, coding)."""
    older = [degrade(jitter_faces(hr, size, rng), size, rng) for _ in range(frames - 1)]
    return np.stack([*older, newest], axis=1)


def _track_starts(lr: np.ndarray, rng: np.random.Generator, p: float = 0.3) -> np.ndarray:
    """A young track has fewer frames than the model fuses; the runtime repeats its oldest one
    (engines/fsr.py). With probability `p` a row gets 1..K-1 real frames, padded that way."""
    lr = lr.copy()
    k = lr.shape[1]
    for i in np.flatnonzero(rng.random(len(lr)) < p):
        have = int(rng.integers(1, k))
        lr[i, : k - have] = lr[i, k - have]
    return lr


def _stack_frames(lr: np.ndarray) -> np.ndarray:
    """(N, K, s, s, 3) -> (N, s, s, 3K): frames on the channels, oldest first."""
    n, k, s = lr.shape[:3]
    return lr.transpose(0, 2, 3, 1, 4).reshape(n, s, s, 3 * k)


def _model_input(clips: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Track clips (N, K, s, s, 3) as the model takes them: the newest frame alone, or the
    frames stacked on the channels with some rows made young tracks."""
    return _stack_frames(_track_starts(clips, rng)) if frames > 1 else clips[:, 0]


def widen_to_frames(state: dict[str, torch.Tensor], frames: int) -> dict[str, torch.Tensor]:
    """A single-frame step 1's weights as a `frames`-frame one that computes exactly the same:
    the first conv's weights move to the newest frame's channels, the older frames' start at
    zero, so fine-tuning starts from the single-frame model and can only learn to use them."""
    w = state["head.weight"]
    if w.shape[1] != 3:
        raise ValueError(f"expected a single-frame step 1 (3 input channels), got {w.shape[1]}")
    wide = torch.zeros(w.shape[0], 3 * frames, *w.shape[2:], dtype=w.dtype)
    wide[:, -3:] = w
    return {**state, "head.weight": wide}


def train_restorer(
    kind: str,
    scale: int,
    variant: str,
    opts: TrainOptions,
    synthetic_only: bool = False,
    real_lr: np.ndarray | None = None,
    real_desc: str = "",
    tag: str = "",
    init_from: Path | None = None,
    out_dir: Path | None = None,
    note: str = "",
    learned: bool = True,
    video: bool = True,
    frames: int = 1,
    through_step2: Path | None = None,
    real_tracks: bool = False,
) -> dict[str, Any]:
    """Train step 1 (kind "step1") or the one-step ablation (kind "onestep") at one scale.

    Returns the info written into the model card. `init_from` is a weights folder (adaptation,
    or the start of a multi-frame model): the restorer starts from its single-frame model
    (widened to `frames`) and G from this scale's training checkpoint when present.
    `learned` / `video` add G's and the video pool's pairs to the synthetic ones
    (`synthetic_only` turns both off). `frames` > 1 trains the multi-frame step 1 on track
    histories (the video pool's clips, and synthetic frames with the aligner's jitter).
    `through_step2` (a weights folder) adds the HR loss of that frozen step 2 on step 1's output
    to the MR loss (see `frozen_step2`). `real_tracks` gives REAL_SHARE of each batch to
    histories of real footage (engines.data.real_tracks), whose targets are MR faces only.
    """
    C.check_choice(scale, variant)
    if kind not in ("step1", "onestep"):
        raise ValueError(f"kind must be step1 or onestep, got {kind!r}")
    if frames > 1 and (kind != "step1" or learned and not synthetic_only):
        raise ValueError(
            "a multi-frame model (--frames > 1) is a step 1 trained without the learned "
            "degradation (its critic sees single frames): pass --no-learned"
        )
    if not 1 <= frames <= POOL_FRAMES:
        raise ValueError(f"frames must be in 1..{POOL_FRAMES}, got {frames}")
    if through_step2 is not None and kind != "step1":
        raise ValueError("--through-step2 trains a step 1 (the one-step model has no step 2)")
    if real_tracks and kind != "step1":
        raise ValueError("--real-tracks trains a step 1 (its targets are 64 px MR faces)")
    s = C.SCALES[scale]
    device = setup_torch(opts)
    prior = frozen_step2(through_step2, variant, device) if through_step2 is not None else None
    rng = np.random.default_rng(opts.seed)
    hr_all = load_hr(
        "train", opts.cache, opts.data, datasets=opts.dataset, limit=opts.limit, finder=opts.finder
    )
    learned, video = learned and not synthetic_only, video and not synthetic_only
    tracks = load_real_tracks(opts.cache, s, finder=opts.finder) if real_tracks else None
    n_real = int(opts.batch * REAL_SHARE) if tracks is not None else 0
    nb = opts.batch - n_real
    pool = None
    if video:
        pool = train_pool(hr_all, s, opts)
    if learned:
        if real_lr is None:
            real_lr = load_real_lr(opts.cache, s, finder=opts.finder)
            real_desc = (
                real_desc or f"{len(real_lr)} tiny faces (12-80 px) harvested from ../shared/data/videos"
            )
        if len(real_lr) < 8:
            raise ValueError(
                f"only {len(real_lr)} real LR faces at {s} px; need >= 8 (more video, or --synthetic-only)"
            )
    arch = C.STEP1_ARCH if kind == "step1" else C.ONESTEP_ARCH
    kw = C.step1_kwargs(scale, variant, frames) if kind == "step1" else C.onestep_kwargs(scale, variant)
    net = build(arch, kw).to(device)
    gen = build(C.DEGRADE_ARCH, C.degrade_kwargs(scale)).to(device)
    disc = PatchDiscriminator(32, downs=1 if s <= 16 else 2).to(device)
    name = C.name(kind, scale, variant, tag, frames)
    if init_from is not None:
        state = {
            k: v.float()
            for k, v in torch.load(
                init_from / C.name(kind, scale, variant) / "model.pt", map_location=device
            ).items()
        }
        net.load_state_dict(widen_to_frames(state, frames) if frames > 1 else state)
        base_ckpt = Checkpoint(opts.ckpt_dir, C.name(kind, scale, variant))
        if learned and base_ckpt.exists():
            gen.load_state_dict(
                torch.load(base_ckpt.path, map_location=device, weights_only=False)["modules"]["gen"]
            )
    params = list(net.parameters()) + (list(gen.parameters()) if learned else [])
    opt = torch.optim.Adam(params, lr=opts.lr, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=opts.lr, betas=(0.5, 0.99))
    modules: dict[str, torch.nn.Module | torch.optim.Optimizer] = {
        "net": net,
        "gen": gen,
        "disc": disc,
        "opt": opt,
        "opt_d": opt_d,
    }
    ckpt = Checkpoint(opts.ckpt_dir, name)
    start, elapsed = 0, 0.0
    if opts.resume and ckpt.exists():
        start, elapsed, _ = ckpt.load(modules, rng, device)
    timer = Timer(elapsed)
    target_size = C.MR_SIZE if kind == "step1" else C.HR_SIZE
    loop = StepLoop(opts, name, start, timer, lambda done: ckpt.save(done, modules, rng, timer.elapsed))
    for _step, t in loop:
        set_lr(opt, opts.lr, t)
        idx = rng.integers(0, len(hr_all), nb)
        flip = rng.random(nb) < 0.5
        hr_np = _flip_by(hr_all[idx], flip)
        hr = to_tensor(hr_np, device)
        mr = area(hr, C.MR_SIZE)
        target = area(hr, target_size)
        fake = gen(mr, torch.randn(nb, 1, s, s, device=device)) if learned else None
        sources = 1 + int(pool is not None) + int(fake is not None and t >= BOOTSTRAP)
        cut = [nb * k // sources for k in range(sources + 1)]
        synth = degrade(hr_np[: cut[1]], s, rng)
        if frames > 1:
            synth = _stack_frames(_track_starts(_history(hr_np[: cut[1]], synth, frames, s, rng), rng))
        lr_parts = [to_tensor(synth, device)]
        if pool is not None:
            rows = idx[cut[1] : cut[2]]
            clips = _flip_by(
                pool[rng.integers(0, len(pool), len(rows)), rows, -frames:], flip[cut[1] : cut[2]]
            )
            lr_parts.append(to_tensor(_model_input(clips, frames, rng), device))
        if fake is not None and t >= BOOTSTRAP:
            lr_parts.append(fake[cut[-2] :].detach())
        if tracks is not None:
            pick, turn = rng.integers(0, len(tracks.lr), n_real), rng.random(n_real) < 0.5
            clips = _flip_by(tracks.lr[pick, -frames:], turn)
            lr_parts.append(to_tensor(_model_input(clips, frames, rng), device))
            target = torch.cat([target, to_tensor(_flip_by(tracks.mr[pick], turn), device)])
        lr_in = torch.cat(lr_parts)
        out = net(lr_in)
        rec = F.l1_loss(out, target) + W_FFT * fft_loss(out, target)
        parts = {"rec": rec}
        if prior is not None:
            final = prior(out[:nb])  # real tracks have no HR target
            parts["hr"] = F.l1_loss(final, hr) + W_FFT * fft_loss(final, hr)
            rec = rec + W_THROUGH * parts["hr"]
        if fake is None:
            loss = rec
        else:
            assert real_lr is not None  # the learned path loaded it above
            real = to_tensor(_flip(real_lr[rng.integers(0, len(real_lr), opts.batch)], rng), device)
            restored = area(net(real), C.MR_SIZE)
            cycle = F.l1_loss(gen(restored, torch.randn(opts.batch, 1, s, s, device=device)), real)
            low = max(2, s // 2)
            lowfreq = F.l1_loss(area(fake, low), area(mr, low))
            adv = g_loss(disc(fake))
            loss = rec + W_ADV * adv + W_CYCLE * cycle + W_LOWFREQ * lowfreq
            parts.update({"adv": adv, "cyc": cycle, "lf": lowfreq})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if fake is not None:
            ld = d_loss(disc(real), disc(fake.detach()))
            opt_d.zero_grad(set_to_none=True)
            ld.backward()
            opt_d.step()
            parts["d"] = ld
        loop.record(parts)
    if loop.interrupted:
        return {"stopped": True, "start": start, "steps": loop.done}
    net.eval()
    out_dir = out_dir or (
        opts.out if kind == "step1" and not synthetic_only and not tag else opts.out / "ablations"
    )
    folder = export_restorer(kind, net, arch, kw, out_dir, name)
    info = {
        "kind": kind,
        "arch": arch,
        "arch_kwargs": kw,
        "gmac": round(C.gmac(arch, kw), 4),
        "params": param_count(net),
        "command": opts.command,
        "device": _device_name(device),
        "seed": opts.seed,
        "steps": loop.done,
        "frames": frames,
        "train_seconds": round(timer.elapsed, 1),
        "final_losses": loop.losses,
        "trained": True,
        "start": start,
        "data": f"HR: {len(hr_all)} aligned {opts.dataset} training faces at 128 px (MR = area downscale "
        "to 64 px)"
        + (f"; real LR: {real_desc}" if learned else "")
        + (f"; LR input: track histories of {frames} frames, newest last" if frames > 1 else "")
        + (
            f"; {REAL_SHARE:.0%} of each batch: {len(tracks.lr)} real track histories (MR targets) "
            f"from {tracks.clips} clips of ../shared/data/videos (engines/data/real_tracks.py)"
            if tracks is not None
            else ""
        )
        + (
            f"; loss: MR L1 + FFT, plus {W_THROUGH:g} x the HR L1 + FFT of the frozen step 2 of "
            f"{through_step2} on the output"
            if through_step2 is not None
            else ""
        ),
        "split": split_note(opts.dataset),
        "degradation": " + ".join(
            ["synthetic (blur, noise, H.264/JPEG)"]
            + (
                ["video coding of mosaic frames (engines/data/video_degrade.py, cached pool)"]
                if video
                else []
            )
            + (["learned generator vs real tiny faces (after a synthetic bootstrap)"] if learned else [])
        ),
        "codec": "real H.264 (PyAV libx264) and JPEG"
        if have_pyav()
        else "JPEG only: PyAV was not installed on the training machine, JPEG stood in for H.264",
        "summary": _summary(kind, scale, variant, synthetic_only, tag, frames) + (" " + note if note else ""),
    }
    write_card(folder, name, info, dataset=opts.dataset)
    return info


def _summary(kind: str, scale: int, variant: str, synthetic_only: bool, tag: str, frames: int) -> str:
    s = C.SCALES[scale]
    what = (
        f"Step 1 of the two-step FSR, x{scale} variant `{variant}`: {s} px aligned face -> 64 px MR face."
        + (
            f" Multi-frame: fuses a track's last {frames} aligned crops (oldest first, newest last; "
            "the output restores the newest)."
            if frames > 1
            else ""
        )
        if kind == "step1"
        else f"One-step ablation, x{scale} `{variant}`: {s} px -> 128 px directly, "
        "at the MAC cost of step 1 + step 2."
    )
    if synthetic_only:
        what += " Ablation: trained on synthetic degradations only (no learned degradation)."
    return what


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
