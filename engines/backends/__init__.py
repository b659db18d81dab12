"""Interchangeable inference backends behind one small interface.

A backend runs one exported model (step 1, the step 2 encoder or the step 2 decoder) on a batch:
`run({input_name: array}) -> {output_name: array}`, float32 NCHW in and out. Backends are
registered by name and imported only when chosen, so the CPU runtime never imports torch or
TensorRT. `auto` tries the fastest one this machine can run and logs why the others were passed
over (the pattern of uvicorn's `auto` modules and deface's backend fallback).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)
"""Fixed batch sizes GPU backends compile for (CUDA graphs, the TensorRT profile's range);
a batch is padded up to the next bucket and larger batches are split into chunks of the last."""

MAX_BATCH = BATCH_BUCKETS[-1]


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None for a dynamic axis) and dtype of one model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class ModelSpec:
    """Everything a backend may load one model from.

    The ONNX file is the source of truth (ONNX Runtime and TensorRT read it). PyTorch rebuilds
    the module from the manifest's `arch` import path ("pkg.module:Class" or "pkg.module.Class"),
    its `arch_kwargs` and the state dict in `torch_weights`; `torch_part` picks a submodule or
    method of that module (e.g. "encoder" of the step 2 network, whose ONNX is split in two).
    `precision` is the ONNX file's: "int8" marks a statically quantized QDQ graph, which only
    ONNX Runtime runs (the others rebuild or compile the fp32 network and refuse it).
    """

    name: str
    onnx: Path
    input_name: str
    output_name: str
    arch: str = ""
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    torch_weights: Path | None = None
    torch_part: str = ""
    precision: str = "fp32"


@dataclass(frozen=True)
class BackendOptions:
    """Knobs shared by all backends; each reads the ones that apply to it."""

    threads: int = 1
    device: str = "auto"
    precision: str = "fp16"
    cuda_graphs: bool = True
    trt_cache_dir: Path | None = None
    cpu_rewrites: bool = True
    """ONNX Runtime: run cubic resizes as MatMuls (onnx_rewrite.py); off only to measure them."""


@runtime_checkable
class Backend(Protocol):
    """One loaded model, ready to run batches."""

    name: str
    input_spec: TensorSpec
    output_spec: TensorSpec

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class BackendUnavailable(RuntimeError):
    """The named backend cannot run on this machine (library or GPU missing)."""


BACKENDS: dict[str, str] = {
    "tensorrt": "engines.backends.tensorrt_backend:TensorRTBackend",
    "torch": "engines.backends.torch_backend:TorchBackend",
    "onnxruntime": "engines.backends.onnxruntime_backend:OnnxRuntimeBackend",
}
"""Name -> import path; the module is imported only when the backend is opened."""

AUTO_ORDER = ("tensorrt", "torch", "onnxruntime")


def valid_names() -> tuple[str, ...]:
    return ("auto", *BACKENDS)


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _nvidia_device_present() -> bool:
    """Cheap check before importing torch just to ask about CUDA (costs seconds on CPU boxes)."""
    if not sys.platform.startswith("linux"):
        return True
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def cuda_unavailable_reason() -> str | None:
    """None when CUDA PyTorch can run here, else why not."""
    if not _has_module("torch"):
        return "torch is not installed"
    if not _nvidia_device_present():
        return "no NVIDIA GPU on this machine"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    return None


def unavailable_reason(name: str) -> str | None:
    """None when backend `name` can run here (as `auto` would use it), else a one-line reason."""
    if name == "onnxruntime":
        return None if _has_module("onnxruntime") else "onnxruntime is not installed"
    if name == "torch":
        return cuda_unavailable_reason()
    if name == "tensorrt":
        if not _has_module("tensorrt"):
            return "the tensorrt Python package is not installed"
        reason = cuda_unavailable_reason()
        return None if reason is None else f"needs CUDA PyTorch for device buffers: {reason}"
    raise ValueError(f"unknown backend {name!r}; valid: {', '.join(valid_names())}")


def resolve(name: str) -> list[str]:
    """The backends to try, in order: [name] for an explicit one, the usable ones for `auto`."""
    if name != "auto":
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; valid: {', '.join(valid_names())}")
        return [name]
    usable: list[str] = []
    for cand in AUTO_ORDER:
        reason = unavailable_reason(cand)
        if reason is None:
            usable.append(cand)
        else:
            log.info("backend auto: skipping %s (%s)", cand, reason)
    if not usable:
        raise BackendUnavailable("backend auto: no backend can run here; install onnxruntime")
    return usable


def backend_class(name: str) -> Callable[..., Backend]:
    """Import the backend's module now (lazily) and return its class."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join(valid_names())}") from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


OPEN_ERRORS = (BackendUnavailable, ImportError, OSError, RuntimeError, ValueError)
"""What a backend raises when it cannot open a model here; `auto` then moves on to the next."""


def open_backends(
    name: str, models: Sequence[ModelSpec], options: BackendOptions | None = None
) -> list[Backend]:
    """Open every model on one backend `name`; for `auto`, the first backend that opens them all.

    Models that must run together (the two steps) share one backend, so a half-opened set is
    closed before the next backend is tried.
    """
    options = options or BackendOptions()
    errors: list[str] = []
    for cand in resolve(name):
        opened: list[Backend] = []
        try:
            cls = backend_class(cand)
            for model in models:
                opened.append(cls(model, options))
        except OPEN_ERRORS as exc:
            for backend in opened:
                backend.close()
            if name != "auto":
                raise
            errors.append(f"{cand}: {exc}")
            log.warning("backend auto: %s failed to open %s (%s); trying the next", cand, _names(models), exc)
            continue
        if name == "auto":
            log.info("backend auto: %s runs %s", cand, _names(models))
        return opened
    raise BackendUnavailable(f"no backend could open {_names(models)}: " + "; ".join(errors))


def open_backend(name: str, model: ModelSpec, options: BackendOptions | None = None) -> Backend:
    """Open one `model` with backend `name` (or the first that works for `auto`)."""
    return open_backends(name, [model], options)[0]


def refuse_int8(backend: str, model: ModelSpec) -> None:
    """Backends that cannot run a QDQ int8 graph say so (`auto` then moves on to ONNX Runtime)."""
    if model.precision == "int8":
        raise BackendUnavailable(
            f"backend {backend} does not run int8 graphs ({model.onnx.name}); "
            "--precision int8 runs on onnxruntime (--backend onnxruntime or auto)"
        )


def _names(models: Sequence[ModelSpec]) -> str:
    return ", ".join(m.name for m in models)


def run_chunked(
    run_one: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, max_batch: int = MAX_BATCH
) -> np.ndarray:
    """Run `run_one` over slices of at most `max_batch`, for backends with a batch ceiling."""
    if len(batch) <= max_batch:
        return run_one(batch)
    return np.concatenate([run_one(batch[i : i + max_batch]) for i in range(0, len(batch), max_batch)])


def bucket_for(n: int) -> int:
    """The smallest batch bucket that holds n (n <= MAX_BATCH)."""
    for b in BATCH_BUCKETS:
        if n <= b:
            return b
    raise ValueError(f"batch of {n} exceeds the largest bucket {MAX_BATCH}; split it first")


def single_input(inputs: dict[str, np.ndarray], spec: TensorSpec) -> np.ndarray:
    """The one float32 array a single-input model needs, with a clear error when it is missing."""
    try:
        x = inputs[spec.name]
    except KeyError:
        raise ValueError(f"model input {spec.name!r} missing; got {sorted(inputs)}") from None
    x = np.ascontiguousarray(x, dtype=np.float32)
    expected = spec.shape[1:]
    if x.ndim != len(spec.shape) or any(
        e is not None and e != s for e, s in zip(expected, x.shape[1:], strict=True)
    ):
        raise ValueError(
            f"input {spec.name!r} must have shape (N, {', '.join(map(str, expected))}), got {x.shape}"
        )
    return x
