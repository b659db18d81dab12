"""The two-step face super-resolution engine (../shared/docs/METHOD.md), over any backend.

Per frame, all faces go through each model in one batched call:
  LR crop --step 1--> MR 64 px --encoder--> latent --toward the prior's mean-->
  --per-track temporal smoothing--> decoder --> HR 128 px.
The latent arithmetic is plain numpy (engines/latent.py) between backend calls, so every backend
gets the same artifact suppression and the same flicker control.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.backends import AUTO_ORDER, Backend, BackendOptions, ModelSpec, open_backends, unavailable_reason
from engines.backends.trt_cache import file_sha256
from engines.base import INPUT_SIZE_FOR_SCALE, STEP1_SCALES, check_batch
from engines.history import TrackHistory
from engines.latent import TemporalLatent, interpolate_code

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class WeightsNotFound(FileNotFoundError):
    """The asked scale/variant has no weights folder; the message lists what is available."""


def available_models(weights_dir: Path = WEIGHTS_DIR) -> list[str]:
    """Names like x8-fast for which both the step 1 and the step 2 folders exist, by scale."""
    if not weights_dir.is_dir():
        return []
    found = []
    for step1 in weights_dir.glob("step1_x*_*"):
        scale, _, variant = step1.name.removeprefix("step1_x").partition("_")
        if scale.isdigit() and step1.is_dir() and (weights_dir / f"step2_{variant}").is_dir():
            found.append((int(scale), variant))
    return [f"x{scale}-{variant}" for scale, variant in sorted(found)]


@dataclass(frozen=True)
class TwoStepFiles:
    step1: ModelSpec | None
    encoder: ModelSpec
    decoder: ModelSpec
    latent_mean: Path


GRAPH_PRECISIONS = ("fp32", "int8")
"""Which ONNX graphs the engine runs: the exported fp32 ones, or their statically quantized
twins (engines/train/quantize.py), which only ONNX Runtime executes."""
PRECISIONS = ("auto", *GRAPH_PRECISIONS)
"""What a user may ask for: `auto` takes the int8 graphs where they pay and exist (see
`files_for_precision`), fp32 elsewhere."""
INT8_SUFFIX = "_int8"


def int8_role(role: str) -> str:
    """The manifest's `files` key of a graph's int8 twin ("onnx" -> "onnx_int8")."""
    return f"{role}{INT8_SUFFIX}"


def read_manifest(weights_dir: Path) -> dict[str, Any]:
    """{model name: entry} of the weights folder's manifest.json ({} when it has none)."""
    path = weights_dir / "manifest.json"
    if not path.is_file():
        return {}
    models = json.loads(path.read_text()).get("models", {})
    return models if isinstance(models, dict) else {}


def step1_name(scale: int, variant: str, frames: int = 1) -> str:
    """The weights folder of a step 1: step1_x8_fast, or step1_x8_fast_k3 fusing 3 frames."""
    return f"step1_x{scale}_{variant}" + (f"_k{frames}" if frames > 1 else "")


def _int8_graph(weights_dir: Path, name: str, entry: dict[str, Any], role: str, fp32: Path) -> Path:
    """The int8 twin of `fp32`, refused when it is missing or was made from other fp32 weights
    (retrained since): mixing them would run a quantized copy of a model that is gone."""
    files = entry.get("files", {})
    rel = files.get(int8_role(role)) if isinstance(files, dict) else None
    remedy = "make it with `python run.py train quantize`, or use --precision fp32"
    if not rel or not (weights_dir / rel).is_file():
        raise WeightsNotFound(f"{name} has no int8 {role} graph in {weights_dir}; {remedy}")
    source = entry.get("int8", {}).get("sources", {}).get(role)
    if source != file_sha256(fp32):
        raise WeightsNotFound(
            f"{weights_dir / rel} was made from another {fp32.name} (the fp32 model changed since); {remedy}"
        )
    return weights_dir / rel


def two_step_files(
    scale: int, variant: str, weights_dir: Path = WEIGHTS_DIR, *, frames: int = 1, precision: str = "fp32"
) -> TwoStepFiles:
    """Model specs of one scale and variant, following the weights folder's contract; x2 (step 2
    alone) has no step 1. `frames` > 1 picks the multi-frame step 1; `precision` int8 points
    every spec at its graph's int8 twin."""
    if precision not in GRAPH_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(GRAPH_PRECISIONS)}, got {precision!r}")
    step1_name_, step2_name = step1_name(scale, variant, frames), f"step2_{variant}"
    wanted = [step2_name] if scale not in STEP1_SCALES else [step1_name_, step2_name]
    missing = [name for name in wanted if not (weights_dir / name).is_dir()]
    if missing:
        have = ", ".join(available_models(weights_dir)) or "none"
        raise WeightsNotFound(
            f"no weights for scale x{scale} variant {variant!r} in {weights_dir} "
            f"(missing {', '.join(missing)}); available: {have}. "
            "Pick one of those, or train it with `python run.py train`"
        )
    manifest = read_manifest(weights_dir)

    def spec(name: str, role: str, inp: str, out: str) -> ModelSpec:
        """`role` is the key in the manifest's `files` ("onnx", "encoder", "decoder")."""
        entry = manifest.get(name, {})
        files = entry.get("files", {}) if isinstance(entry.get("files"), dict) else {}
        default = {
            "onnx": f"{name}/model.onnx",
            "encoder": f"{name}/encoder.onnx",
            "decoder": f"{name}/decoder.onnx",
        }
        weights = weights_dir / files.get("state_dict", f"{name}/model.pt")
        part = entry.get("arch_parts", {}).get(role, role) if role != "onnx" else ""
        onnx = weights_dir / files.get(role, default[role])
        if precision == "int8":
            onnx = _int8_graph(weights_dir, name, entry, role, onnx)
        return ModelSpec(
            name=f"{name}.{role}" if part else name,
            onnx=onnx,
            input_name=inp,
            output_name=out,
            arch=entry.get("arch", ""),
            arch_kwargs=entry.get("arch_kwargs", {}),
            torch_weights=weights if weights.is_file() else None,
            torch_part=part,
            precision=precision,
        )

    step2_files = manifest.get(step2_name, {}).get("files", {})
    mean = (
        step2_files.get("latent_mean", f"{step2_name}/latent_mean.npy")
        if isinstance(step2_files, dict)
        else ""
    )
    return TwoStepFiles(
        step1=spec(step1_name_, "onnx", "lr", "mr") if scale in STEP1_SCALES else None,
        encoder=spec(step2_name, "encoder", "mr", "latent"),
        decoder=spec(step2_name, "decoder", "latent", "hr"),
        latent_mean=weights_dir / (mean or f"{step2_name}/latent_mean.npy"),
    )


def to_model_input(crops: np.ndarray) -> np.ndarray:
    """uint8 BGR NHWC -> float32 RGB NCHW in [0, 1]."""
    return np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(
        1 / 255
    )


def from_model_output(images: np.ndarray) -> np.ndarray:
    """float32 RGB NCHW in [0, 1] -> uint8 BGR NHWC, rounded and clipped."""
    scaled = np.clip(images * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(scaled.transpose(0, 2, 3, 1)[..., ::-1])


class TwoStepEnhancer:
    """`engines.base.Enhancer` over three backends (step 1, step 2 encoder, step 2 decoder), or
    over step 2 alone (`step1` None: the input already is a 64 px mid-resolution face).

    prior_strength pulls each latent toward the prior's mean (0 = off); temporal is the
    exponential smoothing factor of each track's latent across frames (0 = off). Both act on
    the code channels the mean covers; a residual prior's MR channels pass through
    (engines/latent.py `interpolate_code`). `frames` > 1: step 1 fuses each track's last
    `frames` crops (engines/history.py), newest last.
    """

    def __init__(
        self,
        step1: Backend | None,
        encoder: Backend,
        decoder: Backend,
        latent_mean: np.ndarray,
        *,
        scale: int,
        input_size: int,
        prior_strength: float = 0.15,
        temporal: float = 0.5,
        variant: str = "fast",
        frames: int = 1,
    ) -> None:
        if not 0.0 <= prior_strength <= 1.0:
            raise ValueError(f"prior_strength must be in [0, 1], got {prior_strength}")
        out_side = decoder.output_spec.shape[-1]
        if out_side is not None and out_side != input_size * scale:
            raise ValueError(
                f"decoder makes {out_side} px faces but x{scale} of {input_size} px is {input_size * scale}"
            )
        mean = np.asarray(latent_mean, dtype=np.float32)
        if mean.ndim == len(encoder.output_spec.shape) and mean.shape[0] == 1:
            mean = mean[0]
        self.step1, self.encoder, self.decoder = step1, encoder, decoder
        self.latent_mean = mean
        self.scale = scale
        self.input_size = input_size
        self.prior_strength = float(prior_strength)
        self.temporal = TemporalLatent("exponential", alpha=temporal) if temporal > 0 else None
        self.variant = variant
        self.history = TrackHistory(frames) if step1 is not None and frames > 1 else None
        fused = f"-k{frames}" if self.history is not None else ""
        self.name = f"fsr-x{scale}-{variant}{fused}/{(step1 or encoder).name}"

    @property
    def output_size(self) -> int:
        return self.input_size * self.scale

    def _run(self, backend: Backend, x: np.ndarray) -> np.ndarray:
        return backend.run({backend.input_spec.name: x})[backend.output_spec.name]

    def _mr(self, crops: np.ndarray, track_ids: Sequence[int] | None) -> np.ndarray:
        """The mid-resolution face: step 1's output (over each track's last frames when it fuses
        several), or the input itself for step 2 alone."""
        if self.step1 is None:
            return to_model_input(crops)
        if self.history is None:
            return self._run(self.step1, to_model_input(crops))
        windows = self.history.push(crops, track_ids)
        x = np.concatenate([to_model_input(windows[:, k]) for k in range(windows.shape[1])], axis=1)
        return self._run(self.step1, x)

    def latents(self, crops: np.ndarray) -> np.ndarray:
        """Step 1 and the encoder only: the raw latent codes of a batch (for tests and analysis)."""
        check_batch(crops, self.input_size)
        return self._run(self.encoder, self._mr(crops, None))

    def enhance(self, crops: np.ndarray, track_ids: Sequence[int] | None = None) -> np.ndarray:
        check_batch(crops, self.input_size)
        n = len(crops)
        if track_ids is not None and len(track_ids) != n:
            raise ValueError(f"got {len(track_ids)} track ids for {n} crops")
        if n == 0:
            return np.empty((0, self.output_size, self.output_size, 3), np.uint8)
        latents = self._run(self.encoder, self._mr(crops, track_ids))
        z = interpolate_code(latents, self.latent_mean, self.prior_strength, self.temporal, track_ids)
        hr = self._run(self.decoder, z)
        if hr.shape[1:] != (3, self.output_size, self.output_size):
            raise RuntimeError(
                f"decoder returned {hr.shape}, expected (N, 3, {self.output_size}, {self.output_size})"
            )
        return from_model_output(hr)

    def forget(self, track_ids: Sequence[int]) -> None:
        if self.temporal is not None:
            self.temporal.forget(track_ids)
        if self.history is not None:
            self.history.forget(track_ids)

    def close(self) -> None:
        for b in (self.step1, self.encoder, self.decoder):
            if b is not None:
                b.close()


def runs_on_cpu_onnxruntime(backend: str) -> bool:
    """Whether `backend` lands on ONNX Runtime's CPU provider: named, or `auto` with no GPU
    backend usable here (the same checks `auto` makes, without opening anything)."""
    if backend == "auto":
        return all(unavailable_reason(c) is not None for c in AUTO_ORDER if c != "onnxruntime")
    return backend == "onnxruntime"


def files_for_precision(
    precision: str, backend: str, scale: int, variant: str, weights_dir: Path, frames: int = 1
) -> TwoStepFiles:
    """The model specs for `precision`. `auto` takes the int8 graphs where they pay and hold: on
    ONNX Runtime's CPU provider (about half the CPU per face, at most 0.04 dB in `bench quality`)
    when this model's int8 twins exist and were made from its current fp32 graphs; fp32 on a GPU
    backend (faster there, and they refuse int8) and for models without twins (the multi-frame
    and `quality` ones), which the log says."""
    if precision == "auto":
        if runs_on_cpu_onnxruntime(backend):
            try:
                return two_step_files(scale, variant, weights_dir, frames=frames, precision="int8")
            except WeightsNotFound as exc:
                log.info("precision auto: fp32 for x%d %s (%s)", scale, variant, exc)
        precision = "fp32"
    return two_step_files(scale, variant, weights_dir, frames=frames, precision=precision)


def load_two_step(
    scale: int = 8,
    variant: str = "fast",
    backend: str = "auto",
    *,
    prior_strength: float = 0.15,
    temporal: float = 0.5,
    threads: int = 1,
    weights_dir: Path | None = None,
    trt_cache_dir: Path | None = None,
    frames: int = 1,
    precision: str = "fp32",
    cpu_rewrites: bool = True,
) -> TwoStepEnhancer:
    """The shipped (or `weights_dir`) two-step model for `scale` and `variant`, on `backend`.

    `frames` > 1 asks for the multi-frame step 1; a factor that has none (only some are
    trained) keeps its single-frame one, and the log says so. `precision` int8 runs the
    quantized graphs; only ONNX Runtime executes them, so backend `auto` lands there (the GPU
    backends refuse them with a reason, logged) and an explicit other backend fails with that
    reason. Precision `auto` decides per model (`files_for_precision`).
    `cpu_rewrites` False runs ONNX Runtime on the graphs exactly as exported (benchmarks
    compare the two)."""
    if scale not in INPUT_SIZE_FOR_SCALE:
        raise ValueError(f"scale must be one of {sorted(INPUT_SIZE_FOR_SCALE)}, got {scale}")
    weights_dir = weights_dir or WEIGHTS_DIR
    if (
        frames > 1
        and scale in STEP1_SCALES
        and not (weights_dir / step1_name(scale, variant, frames)).is_dir()
    ):
        log.warning(
            "no %d-frame step 1 for x%d %s in %s: x%d fuses no frames",
            frames,
            scale,
            variant,
            weights_dir,
            scale,
        )
        frames = 1
    files = files_for_precision(
        precision, backend, scale, variant, weights_dir, frames if scale in STEP1_SCALES else 1
    )
    if not files.latent_mean.is_file():
        raise WeightsNotFound(f"{files.latent_mean} is missing; the step 2 folder is incomplete")
    options = BackendOptions(threads=threads, trt_cache_dir=trt_cache_dir, cpu_rewrites=cpu_rewrites)
    models = [m for m in (files.step1, files.encoder, files.decoder) if m is not None]
    *step1, encoder, decoder = open_backends(backend, models, options)
    enhancer = TwoStepEnhancer(
        step1[0] if step1 else None,
        encoder,
        decoder,
        np.load(files.latent_mean, allow_pickle=False),
        scale=scale,
        input_size=INPUT_SIZE_FOR_SCALE[scale],
        prior_strength=prior_strength,
        temporal=temporal,
        variant=variant,
        frames=frames,
    )
    log.info("enhancer %s ready", enhancer.name)
    return enhancer
