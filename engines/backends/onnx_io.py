"""Read a model's input and output specs from its ONNX file without running it: backends that
do not execute the ONNX graph itself (PyTorch, and TensorRT before building) still follow it as
the contract for names and shapes."""

from __future__ import annotations

from pathlib import Path

from engines.backends import TensorSpec

_ONNX_FLOAT = 1


def _to_spec(value) -> TensorSpec:  # type: ignore[no-untyped-def]
    t = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return TensorSpec(value.name, shape, "float32" if t.elem_type == _ONNX_FLOAT else f"onnx:{t.elem_type}")


def onnx_io_specs(path: Path) -> tuple[TensorSpec, TensorSpec]:
    """(input, output) of a single-input, single-output ONNX model."""
    import onnx

    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ValueError(
            f"{path} must have one input and one output, has {len(inputs)} and {len(graph.output)}"
        )
    return _to_spec(inputs[0]), _to_spec(graph.output[0])
