"""What every trainer shares: options, seeding, batches, losses, checkpoints with resume."""

from __future__ import annotations

import logging
import math
import os
import random
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from engines.data.finder import FinderFactory

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]


@dataclass
class TrainOptions:
    """One training run. `steps` counts optimizer steps of the main network. `stop_after` ends this
    invocation after that many steps with a checkpoint and no export (train in chunks on a shared
    machine: the next `--resume` continues exactly where it stopped)."""

    steps: int = 3000
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0
    device: str = "cpu"
    threads: int = 2
    data: Path | None = None
    dataset: str = "celeba"
    cache: Path = REPO / "cache" / "data"
    ckpt_dir: Path = REPO / "cache" / "ckpt"
    out: Path = REPO / "engines" / "weights"
    resume: bool = False
    time_budget: float | None = None
    stop_after: int | None = None
    ckpt_every: int = 500
    progress: bool = True
    limit: int | None = None
    command: str = field(default_factory=lambda: "python run.py " + shlex.join(sys.argv[1:]))
    finder: FinderFactory | None = None
    """The face detector, for preparing data caches that are missing (run.py passes it)."""

    def public(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "finder"}
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def setup_torch(opts: TrainOptions) -> torch.device:
    """Seed everything and, on CPU, force deterministic kernels: two runs with one seed give
    bit-identical weights (tested)."""
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    if opts.device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {opts.device!r}")
    torch.set_num_threads(max(1, opts.threads))
    random.seed(opts.seed)
    np.random.seed(opts.seed)
    torch.manual_seed(opts.seed)
    if opts.device == "cpu":
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(opts.device)


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 RGB NHWC -> float NCHW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.detach().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def area(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area downscale by an integer factor (exactly cv2.INTER_AREA for integer ratios)."""
    return F.adaptive_avg_pool2d(x, size)


def fft_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 distance of the 2-D spectra: pushes for the high frequencies an L1/L2 loss gives up on
    (pixel losses average plausible details into blur)."""
    fa = torch.fft.rfft2(a.float(), norm="ortho")
    fb = torch.fft.rfft2(b.float(), norm="ortho")
    return (fa - fb).abs().mean()


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN critic loss."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


def random_blur(x: torch.Tensor, gen: torch.Generator, max_sigma: float) -> torch.Tensor:
    """Per-sample isotropic Gaussian blur with sigma ~ U(0, max_sigma): robustness of step 2 to
    the softness of step 1's outputs."""
    n = x.shape[0]
    sig = torch.rand(n, generator=gen, device=x.device) * max_sigma + 1e-3
    r = 3
    ax = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k1 = torch.exp(-0.5 * (ax[None, :] / sig[:, None]) ** 2)
    k1 = k1 / k1.sum(1, keepdim=True)
    k2 = k1[:, :, None] * k1[:, None, :]  # (n, 7, 7)
    c = x.shape[1]
    weight = k2[:, None].repeat_interleave(c, 0)  # (n*c, 1, 7, 7)
    y = F.conv2d(F.pad(x.reshape(1, n * c, *x.shape[2:]), (r, r, r, r), mode="reflect"), weight, groups=n * c)
    return y.reshape_as(x)


class Checkpoint:
    """Atomic save / load of everything a run needs to continue exactly where it stopped:
    networks, optimizers, step, elapsed time, and the torch + numpy RNG states."""

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / f"{name}.pt"

    def exists(self) -> bool:
        return self.path.exists()

    def save(
        self,
        step: int,
        modules: dict[str, nn.Module | torch.optim.Optimizer],
        rng: np.random.Generator,
        elapsed: float,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "step": step,
            "elapsed": elapsed,
            "np_rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "modules": {k: m.state_dict() for k, m in modules.items()},
            "extra": extra or {},
        }
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def load(
        self,
        modules: dict[str, nn.Module | torch.optim.Optimizer],
        rng: np.random.Generator,
        device: torch.device,
    ) -> tuple[int, float, dict[str, Any]]:
        state = torch.load(self.path, map_location=device, weights_only=False)
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        log.info("resumed %s at step %d", self.path, state["step"])
        return int(state["step"]), float(state["elapsed"]), state["extra"]


def progress(opts: TrainOptions, step: int, elapsed: float) -> float:
    """Fraction of the run done: by steps, or by wall-clock when a time budget ends it sooner
    (a GPU lease is counted in seconds). Runs without a budget stay deterministic."""
    t = step / opts.steps
    if opts.time_budget:
        t = max(t, elapsed / opts.time_budget)
    return min(t, 1.0)


def set_lr(opt: torch.optim.Optimizer, base: float, t: float) -> None:
    """Constant, then a cosine decay over the last 40% of the run to 5% of the rate."""
    u = (t - 0.6) / 0.4
    f = 1.0 if u <= 0 else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(u, 1.0)))
    for g in opt.param_groups:
        g["lr"] = base * f


class Timer:
    def __init__(self, already: float = 0.0) -> None:
        self.start = time.monotonic() - already

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class StepLoop:
    """The step loop every trainer shares: the progress bar, the end of the run (steps, time
    budget or --stop-after), periodic checkpoints and the one that keeps a cut-short run
    resumable. Iterating yields (step, t) with t the fraction of the run done; the trainer
    reports its losses with `record` and finds `done`/`interrupted` afterwards.

    `save(step)` writes a checkpoint at `step` (the trainer knows what belongs in it)."""

    def __init__(
        self, opts: TrainOptions, name: str, start: int, timer: Timer, save: Callable[[int], None]
    ) -> None:
        self.opts, self.name, self.start, self.timer, self.save = opts, name, start, timer, save
        self.done = start
        self.losses: dict[str, float] = {}
        self._parts: dict[str, torch.Tensor] = {}

    def record(self, parts: dict[str, torch.Tensor]) -> None:
        self._parts = parts

    def __iter__(self) -> Iterator[tuple[int, float]]:
        opts = self.opts
        bar = tqdm(
            range(self.start, opts.steps),
            desc=self.name,
            disable=not opts.progress,
            initial=self.start,
            total=opts.steps,
        )
        for step in bar:
            t = progress(opts, step, self.timer.elapsed)
            if t >= 1.0 or (opts.stop_after is not None and step - self.start >= opts.stop_after):
                break
            yield step, t
            if step % 20 == 0 or step == opts.steps - 1:
                self.losses = {k: round(float(v.detach()), 4) for k, v in self._parts.items()}
                bar.set_postfix(self.losses)
            self.done = step + 1
            if self.done % opts.ckpt_every == 0 or self.done == opts.steps:
                self.save(self.done)
        bar.close()
        if self.done < opts.steps:  # stopped by the time budget or --stop-after
            self.save(self.done)
        if self.interrupted:
            log.info("%s stopped at step %d of %d; continue with --resume", self.name, self.done, opts.steps)

    @property
    def interrupted(self) -> bool:
        """Ended by --stop-after (not by a time budget): checkpointed, to be resumed, not exported."""
        opts = self.opts
        return opts.stop_after is not None and self.done < opts.steps and not opts.time_budget
