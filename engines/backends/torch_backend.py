"""PyTorch, on the CPU or a CUDA GPU, from the training code's own module and state dict.

On CUDA the module runs in fp16 and each batch bucket (1, 2, 4, 8, 16, 32) is captured once as a
CUDA graph: our networks are small, so launching their kernels one by one from Python costs more
than running them, and a replayed graph launches them all at once. A batch is padded up to its
bucket (rows are independent in eval mode, so padding cannot change the real rows). This
module is imported only when the backend is opened: the runtime install does not need torch.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np

from engines.backends import (
    MAX_BATCH,
    BackendOptions,
    BackendUnavailable,
    ModelSpec,
    bucket_for,
    cuda_unavailable_reason,
    refuse_int8,
    run_chunked,
    single_input,
)
from engines.backends.onnx_io import onnx_io_specs

try:
    import torch
    from torch import nn
except ImportError as exc:
    raise BackendUnavailable("backend torch needs PyTorch: pip install -r requirements-dev.txt") from exc

log = logging.getLogger(__name__)


def import_arch(path: str) -> Any:
    """The class (or factory) named by "pkg.module:Class" or "pkg.module.Class"."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"arch must be 'package.module:Class', got {path!r}")
    return getattr(importlib.import_module(module_name), attr)


def build_module(model: ModelSpec) -> nn.Module:
    """Rebuild the nn.Module of `model` from its manifest entry and state dict, in eval mode."""
    if not model.arch:
        raise ValueError(f"{model.name}: the manifest gives no `arch`, so PyTorch cannot rebuild it")
    net = import_arch(model.arch)(**model.arch_kwargs)
    if model.torch_weights is not None:
        if not model.torch_weights.is_file():
            raise FileNotFoundError(f"{model.name}: state dict not found: {model.torch_weights}")
        state = torch.load(model.torch_weights, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        net.load_state_dict(state)
    net.eval()
    if not model.torch_part:
        return net
    part = getattr(net, model.torch_part, None)
    if isinstance(part, nn.Module):
        return part.eval()
    if callable(part):
        return MethodModule(net, model.torch_part).eval()
    raise ValueError(f"{model.name}: {type(net).__name__} has no submodule or method {model.torch_part!r}")


class MethodModule(nn.Module):
    """Exposes one method of a module (e.g. `encode`) as `forward`, for split ONNX graphs."""

    def __init__(self, net: nn.Module, method: str) -> None:
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.net, self.method)(x)


class _CudaGraph:
    """One captured forward pass at a fixed batch size, with static input and output buffers."""

    def __init__(
        self, module: nn.Module, sample_shape: tuple[int, ...], batch: int, dtype: torch.dtype
    ) -> None:
        self.input = torch.zeros((batch, *sample_shape), dtype=dtype, device="cuda")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(3):
                module(self.input)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.output = module(self.input)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        self.input[:n].copy_(x)
        self.graph.replay()
        return self.output[:n]


class TorchBackend:
    """`device` "auto" takes CUDA when present; fp16 and CUDA graphs apply on CUDA only."""

    def __init__(self, model: ModelSpec, options: BackendOptions | None = None) -> None:
        options = options or BackendOptions()
        refuse_int8("torch", model)  # it rebuilds the fp32 network from the state dict
        device = options.device
        if device == "auto":
            device = "cuda" if cuda_unavailable_reason() is None else "cpu"
        if device == "cuda" and (reason := cuda_unavailable_reason()) is not None:
            raise BackendUnavailable(f"backend torch on cuda: {reason}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"torch device must be auto, cpu or cuda, got {options.device!r}")
        self.model = model
        self.device = device
        self.input_spec, self.output_spec = onnx_io_specs(model.onnx)
        if (self.input_spec.name, self.output_spec.name) != (model.input_name, model.output_name):
            raise ValueError(
                f"{model.onnx}: I/O {self.input_spec.name}->{self.output_spec.name}, "
                f"expected {model.input_name}->{model.output_name}"
            )
        self.half = device == "cuda" and options.precision == "fp16"
        self.dtype = torch.float16 if self.half else torch.float32
        self.use_graphs = device == "cuda" and options.cuda_graphs
        module = build_module(model).to(device=device, dtype=self.dtype)
        self._module: nn.Module | None = module
        self._graphs: dict[int, _CudaGraph] = {}
        if device == "cpu":
            torch.set_num_threads(max(1, options.threads))
        suffix = "-fp16" if self.half else ""
        self.name = f"torch-{device}{suffix}" + ("-graphs" if self.use_graphs else "")

    @property
    def module(self) -> nn.Module:
        if self._module is None:
            raise RuntimeError(f"{self.name} backend of {self.model.name} is closed")
        return self._module

    def _sample_shape(self, x: np.ndarray) -> tuple[int, ...]:
        return tuple(int(d) for d in x.shape[1:])

    def _run_cuda(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to("cuda", non_blocking=True).to(self.dtype)
        with torch.no_grad():
            if self.use_graphs:
                bucket = bucket_for(len(x))
                graph = self._graphs.get(bucket)
                if graph is None:
                    log.debug("%s: capturing a CUDA graph for batch %d", self.model.name, bucket)
                    graph = self._graphs[bucket] = _CudaGraph(
                        self.module, self._sample_shape(x), bucket, self.dtype
                    )
                y = graph(t)
            else:
                y = self.module(t)
            return y.float().cpu().numpy()

    def _run_cpu(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(x)).numpy()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = single_input(inputs, self.input_spec)
        run_one = self._run_cuda if self.device == "cuda" else self._run_cpu
        y = run_chunked(run_one, x, MAX_BATCH)
        return {self.output_spec.name: np.ascontiguousarray(y, dtype=np.float32)}

    def close(self) -> None:
        """Drop the graphs (they pin GPU memory) and the module."""
        self._graphs.clear()
        self._module = None
