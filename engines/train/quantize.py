"""INT8 twins of the shipped FSR graphs (`python run.py train quantize`), for `--precision int8`.

Each fp32 ONNX file in the manifest (step 1's model.onnx, step 2's encoder.onnx and decoder.onnx)
gets a statically quantized copy beside it (model_int8.onnx, ...), recorded in the manifest as
`files.<role>_int8` with the sha256 of the fp32 file it was made from (`int8.sources`): a
retrained model then reads as stale instead of silently pairing new weights with old int8 ones.

ONNX Runtime's QDQ format, uint8 activations and int8 weights per output channel (its U8S8
kernels), MinMax ranges, weights in 7 bits (`reduce_range`): x86 CPUs without VNNI (AVX2 only)
multiply u8 x s8 pairs into saturating 16-bit sums, which lost up to 0.14 dB against fp32 with
8-bit weights on such a machine (within 0.05 dB on a VNNI one); 7 bits cannot saturate there.
The ranges come from aligned training faces in the form each graph meets them at run time,
because a range fitted to anything else clips real inputs:
  * step 1 at xS: training faces through the training degradation (engines/data/degrade) to S px;
  * step 2's encoder: 64 px MR faces, half of them step 1's fp32 outputs (every step 1 of the
    variant in turn) and half area-downscaled training faces (what the x2 entry sends);
  * step 2's decoder: the encoder's fp32 codes of those faces, pulled toward the prior's mean at
    the runtime's default strength (engines/latent.py).
Rerun it whenever the fp32 weights change; it is deterministic for a seed.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.backends import BackendOptions, ModelSpec
from engines.backends.onnxruntime_backend import OnnxRuntimeBackend
from engines.backends.trt_cache import file_sha256
from engines.base import INPUT_SIZE_FOR_SCALE
from engines.data.datasets import load_hr, names
from engines.data.degrade import degrade
from engines.data.finder import FinderFactory
from engines.fsr import INT8_SUFFIX, int8_role, read_manifest, two_step_files
from engines.latent import interpolate_code

log = logging.getLogger(__name__)

RECIPE = "qdq-u8s8-perchannel-reducerange-minmax-v2"
"""Names the quantization settings below; recorded with every file."""
CALIB_BATCH = 16
"""Faces per calibration batch (MinMax keeps only each batch's per-tensor min and max)."""
DEFAULT_PRIOR_STRENGTH = 0.15
"""The runtime's default pull toward the prior's mean (EnhanceConfig.prior_strength)."""
MR_SIZE = INPUT_SIZE_FOR_SCALE[2]
"""Step 2's input side (the x2 entry's faces)."""


def int8_path(fp32: Path) -> Path:
    """model.onnx -> model_int8.onnx, beside it."""
    return fp32.with_name(f"{fp32.stem}{INT8_SUFFIX}{fp32.suffix}")


def to_nchw(images: np.ndarray) -> np.ndarray:
    """uint8 RGB NHWC -> float32 RGB NCHW in [0, 1], the graphs' input."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1 / 255)


class _QuietQuantizer(logging.Filter):
    """The quantizer warns through the root logger that the model should be pre-processed
    (we do) and about weights it rightly leaves per-tensor; neither needs the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("pre-processing" in msg or "out-of-range for weight" in msg)


def quantize_graph(
    source: Path,
    target: Path,
    input_name: str,
    feeds: np.ndarray | Sequence[np.ndarray],
    symbolic_shapes: bool = True,
) -> None:
    """Static QDQ quantization of `source` calibrated on `feeds` (float32 NCHW: one array, read
    in CALIB_BATCH batches, or a list of batches of their own sizes), written atomically to
    `target` (a concurrent reader sees the old file or the whole new one).
    `symbolic_shapes=False` skips ONNX Runtime's symbolic shape inference in the pre-processing,
    which cannot follow a graph with free height and width (CenterFace); ONNX's own suffices."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = (
                iter(feeds[i : i + CALIB_BATCH] for i in range(0, len(feeds), CALIB_BATCH))
                if isinstance(feeds, np.ndarray)
                else iter(feeds)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    quiet = _QuietQuantizer()
    logging.getLogger().addFilter(quiet)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=not symbolic_shapes)
            out = Path(tmp) / "int8.onnx"
            quantize_static(
                str(prepared),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(out.read_bytes())
            os.replace(partial, target)
    finally:
        logging.getLogger().removeFilter(quiet)


def _run(path: Path, input_name: str, output_name: str, x: np.ndarray, threads: int) -> np.ndarray:
    """An fp32 graph over `x` in calibration-sized batches (its outputs feed the next graph)."""
    backend = OnnxRuntimeBackend(
        ModelSpec(path.stem, path, input_name, output_name), BackendOptions(threads=threads)
    )
    try:
        return np.concatenate(
            [
                backend.run({input_name: x[i : i + CALIB_BATCH]})[output_name]
                for i in range(0, len(x), CALIB_BATCH)
            ]
        )
    finally:
        backend.close()


def degraded(hr: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """HR faces -> LR faces of `size` px through the training degradation, one H.264 stream per
    calibration batch (as training draws them)."""
    return np.concatenate(
        [degrade(hr[i : i + CALIB_BATCH], size, rng) for i in range(0, len(hr), CALIB_BATCH)]
    )


@dataclass(frozen=True)
class Calibration:
    """The faces every graph is calibrated on, and how they were chosen (for the card)."""

    hr: np.ndarray
    dataset: str
    seed: int

    def describe(self) -> str:
        lists = ", ".join(f"engines/splits/{d}_train.txt" for d in names(self.dataset))
        return f"{len(self.hr)} aligned training faces, a seeded choice (seed {self.seed}) from {lists}"


def load_calibration(
    cache: Path,
    data: Path | None,
    dataset: str,
    per_dataset: int,
    seed: int,
    finder: FinderFactory | None = None,
) -> Calibration:
    """`per_dataset` faces of each dataset's training split, a seeded random choice (a split's
    first faces would be one source's, all alike)."""
    rng = np.random.default_rng(seed)
    parts = []
    for name in names(dataset):
        hr = load_hr("train", cache, data, datasets=name, finder=finder)
        parts.append(hr[np.sort(rng.choice(len(hr), size=min(len(hr), per_dataset), replace=False))])
    return Calibration(np.concatenate(parts), dataset, seed)


def _variant(name: str) -> str:
    return name.rsplit("_", 1)[-1]


def _scale(name: str) -> int:
    """step1_x8_fast -> 8."""
    return int(name.split("_")[1].removeprefix("x"))


def quantize_weights(
    weights_dir: Path,
    calibration: Calibration,
    *,
    variants: Sequence[str] = ("fast",),
    threads: int = 1,
    command: str = "",
) -> dict[str, dict[str, Any]]:
    """Write the int8 twin of every fp32 graph of `variants` in `weights_dir` and record each in
    the manifest and the model card. Returns {model name: its manifest `int8` record}."""
    import onnxruntime as ort

    from engines.train.card import set_section
    from engines.train.export import update_manifest

    manifest = read_manifest(weights_dir)
    chosen = sorted(n for n in manifest if _variant(n) in variants)
    step1_names = [n for n in chosen if manifest[n].get("kind") == "step1"]
    step2_names = [n for n in chosen if manifest[n].get("kind") == "step2"]
    if not step2_names:
        raise FileNotFoundError(f"no step 2 model of {', '.join(variants)} in {weights_dir}/manifest.json")
    rng = np.random.default_rng(calibration.seed)
    done: dict[str, dict[str, Any]] = {}

    def record(name: str, inputs: str, roles: dict[str, tuple[Path, float]]) -> None:
        entry = dict(read_manifest(weights_dir)[name])
        files = dict(entry["files"]) if isinstance(entry.get("files"), dict) else {}
        info: dict[str, Any] = {
            "recipe": RECIPE,
            "calibration": calibration.describe(),
            "faces": len(calibration.hr),
            "inputs": inputs,
            "seed": calibration.seed,
            "onnxruntime": ort.__version__,
            "command": command,
            "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(sum(s for _, s in roles.values()), 1),
            "sources": {role: file_sha256(fp32) for role, (fp32, _) in roles.items()},
        }
        for role, (fp32, _) in roles.items():
            files[int8_role(role)] = int8_path(fp32).relative_to(weights_dir).as_posix()
        entry["files"], entry["int8"] = files, info
        update_manifest(weights_dir, name, entry)
        set_section(weights_dir / name, "int8", card_text(info, [int8_path(p) for p, _ in roles.values()]))
        done[name] = info

    mr: dict[str, list[np.ndarray]] = {}
    for name in step1_names:
        scale, variant = _scale(name), _variant(name)
        spec = two_step_files(scale, variant, weights_dir).step1
        assert spec is not None  # step 1 scales always have one
        size = INPUT_SIZE_FOR_SCALE[scale]
        lr = to_nchw(degraded(calibration.hr, size, rng))
        t0 = time.monotonic()
        quantize_graph(spec.onnx, int8_path(spec.onnx), spec.input_name, lr)
        inputs = f"the faces through the training degradation (engines/data/degrade.py) to {size} px"
        record(name, inputs, {"onnx": (spec.onnx, time.monotonic() - t0)})
        mr.setdefault(variant, []).append(_run(spec.onnx, spec.input_name, spec.output_name, lr, threads))
        log.info("int8: %s written", int8_path(spec.onnx))
    for name in step2_names:
        variant = _variant(name)
        files = two_step_files(2, variant, weights_dir)
        enc, dec = files.encoder, files.decoder
        area = np.stack(
            [cv2.resize(h, (MR_SIZE, MR_SIZE), interpolation=cv2.INTER_AREA) for h in calibration.hr]
        )
        faces = np.concatenate([to_nchw(area), *mr.get(variant, [])])
        t0 = time.monotonic()
        quantize_graph(enc.onnx, int8_path(enc.onnx), enc.input_name, faces)
        t_enc = time.monotonic() - t0
        code = _run(enc.onnx, enc.input_name, enc.output_name, faces, threads)
        mean = np.load(files.latent_mean, allow_pickle=False).astype(np.float32)
        z = interpolate_code(code, mean[0] if mean.ndim == code.ndim else mean, DEFAULT_PRIOR_STRENGTH)
        t0 = time.monotonic()
        quantize_graph(dec.onnx, int8_path(dec.onnx), dec.input_name, z)
        scales = ", ".join(f"x{_scale(n)}" for n in step1_names if _variant(n) == variant)
        inputs = (
            f"encoder: 64 px MR faces, the faces area-downscaled and step 1's fp32 outputs "
            f"({scales or 'none'}); decoder: the encoder's fp32 codes of them at prior strength "
            f"{DEFAULT_PRIOR_STRENGTH}"
        )
        record(name, inputs, {"encoder": (enc.onnx, t_enc), "decoder": (dec.onnx, time.monotonic() - t0)})
        log.info("int8: %s and %s written", int8_path(enc.onnx), int8_path(dec.onnx))
    return done


def card_text(info: dict[str, Any], files: Sequence[Path]) -> str:
    """The card's INT8 section: what was made, from what, how and when."""
    sizes = ", ".join(f"`{p.name}` ({p.stat().st_size / 1e6:.2f} MB)" for p in files)
    return "\n".join(
        [
            "## INT8 (`--precision int8`, ONNX Runtime)",
            "",
            f"{sizes}: ONNX Runtime static quantization (QDQ, uint8 activations, int8 weights in 7 "
            "bits per output channel, which cannot saturate on AVX2-only CPUs, MinMax ranges; "
            f"recipe `{info['recipe']}`, onnxruntime {info['onnxruntime']}).",
            "",
            "| field | value |",
            "|---|---|",
            f"| command | `{info['command']}` |",
            f"| calibration | {info['calibration']} |",
            f"| calibration faces | {info['faces']} |",
            f"| calibration inputs | {info['inputs']} |",
            f"| seed | {info['seed']} |",
            f"| quantize seconds | {info['seconds']} |",
            f"| made | {info['made']} |",
            "",
            "Remade by `python run.py train quantize` whenever the fp32 graphs change (the manifest "
            "keeps the sha256 of the fp32 file each int8 file was made from; a mismatch is refused).",
            "",
        ]
    )
