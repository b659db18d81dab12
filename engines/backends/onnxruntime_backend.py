"""ONNX Runtime on the CPU: the default backend, and the only one the runtime install needs.

Sessions are set up for a small shared CPU: a fixed number of intra-op threads, one inter-op
thread, and thread spinning off. Several sessions (detector, step 1, encoder, decoder) share two
cores here, and spinning threads starve each other: turning it off doubled pipeline throughput
in our measurement (shared/docs/RECIPES.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engines.backends import BackendOptions, BackendUnavailable, ModelSpec, TensorSpec, single_input

log = logging.getLogger(__name__)


def session_options(threads: int):  # type: ignore[no-untyped-def]
    """SessionOptions for one model on a shared CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def cpu_graph(path: Path) -> bytes:
    """The model's bytes with its cubic resizes as MatMuls (engines/backends/onnx_rewrite.py):
    the same function, about half the CPU of the shipped residual models."""
    import onnx

    from engines.backends.onnx_rewrite import rewrite_cubic_resize

    graph = onnx.load(str(path))
    replaced = rewrite_cubic_resize(graph)
    log.debug("onnxruntime: %s: %d cubic Resize node(s) run as MatMuls", path.name, replaced)
    return graph.SerializeToString()


def _spec(arg) -> TensorSpec:  # type: ignore[no-untyped-def]
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    dtype = "float32" if arg.type == "tensor(float)" else arg.type
    return TensorSpec(arg.name, shape, dtype)


class OnnxRuntimeBackend:
    """One ONNX Runtime session on the CPU execution provider."""

    def __init__(self, model: ModelSpec, options: BackendOptions | None = None) -> None:
        options = options or BackendOptions()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("backend onnxruntime needs `pip install onnxruntime`") from exc
        if not model.onnx.is_file():
            raise FileNotFoundError(f"ONNX model not found: {model.onnx}")
        self.model = model
        self.session = ort.InferenceSession(
            cpu_graph(model.onnx) if options.cpu_rewrites else str(model.onnx),
            sess_options=session_options(options.threads),
            providers=["CPUExecutionProvider"],
        )
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{model.onnx} must have one input and one output, has {len(inputs)} and {len(outputs)}"
            )
        self.input_spec = _spec(inputs[0])
        self.output_spec = _spec(outputs[0])
        self.name = "onnxruntime-int8" if model.precision == "int8" else "onnxruntime"
        log.debug("onnxruntime: %s loaded with %d thread(s)", model.onnx, options.threads)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = single_input(inputs, self.input_spec)
        (y,) = self.session.run([self.output_spec.name], {self.input_spec.name: x})
        return {self.output_spec.name: np.asarray(y, dtype=np.float32)}

    def close(self) -> None:
        """ONNX Runtime frees the session with the object; drop our reference."""
        self.session = None
