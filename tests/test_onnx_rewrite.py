"""Cubic Resize as two MatMuls (engines/backends/onnx_rewrite.py): the same numbers as ONNX
Runtime's own Resize, on hand-built graphs and on the shipped models, fp32 and int8."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from engines.backends.onnx_rewrite import cubic_matrix, rewrite_cubic_resize
from engines.backends.onnxruntime_backend import cpu_graph
from engines.fsr import WEIGHTS_DIR


def resize_graph(n_in: int | str, n_out: int, mode: str = "cubic", **attrs: Any) -> onnx.ModelProto:
    """x (2, 3, n_in, n_in) -> Resize to n_out; a string n_in makes H and W dynamic."""
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode, **attrs)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, n_in, n_in])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [2, 3, n_out, n_out])
    graph = helper.make_graph([node], "resize", [x], [y], [sizes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("n_in, n_out", [(16, 64), (64, 128), (8, 64), (32, 64), (128, 48)])
def test_the_matrices_are_onnx_runtimes_cubic_resize(n_in: int, n_out: int) -> None:
    x = np.random.default_rng(n_in).random((2, 3, n_in, n_in), dtype=np.float32)
    a = cubic_matrix(n_in, n_out)
    assert np.abs(run(resize_graph(n_in, n_out), x) - a @ x @ a.T).max() < 1e-5


def test_the_rewritten_graph_has_matmuls_and_the_same_output() -> None:
    model = resize_graph(16, 64)
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    before = run(model, x)
    assert rewrite_cubic_resize(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "MatMul"]
    assert np.abs(run(model, x) - before).max() < 1e-5


@pytest.mark.parametrize(
    "model",
    [
        resize_graph("h", 64),  # input size unknown
        resize_graph(16, 64, mode="linear"),
        resize_graph(16, 64, coordinate_transformation_mode="align_corners"),
        resize_graph(16, 64, exclude_outside=1),
    ],
    ids=["dynamic", "linear", "align-corners", "exclude-outside"],
)
def test_other_resizes_are_left_alone(model: onnx.ModelProto) -> None:
    assert rewrite_cubic_resize(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Resize"]


@pytest.mark.parametrize(
    "rel, name, shape",
    [
        ("step1_x8_fast/model", "lr", (3, 3, 16, 16)),
        ("step1_x16_fast/model", "lr", (3, 3, 8, 8)),
        ("step2_fast/decoder", "latent", (3, 64, 16, 16)),
    ],
)
@pytest.mark.parametrize("suffix", ["", "_int8"])
def test_shipped_graphs_compute_the_same_after_the_rewrite(
    rel: str, name: str, shape: tuple, suffix: str
) -> None:
    """fp32: equal within float rounding. int8: the resize ran on uint8 and now runs in float
    between the same quantize steps, so a pixel may move by one level (1/255)."""
    path = WEIGHTS_DIR / f"{rel}{suffix}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(cpu_graph(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random(shape, dtype=np.float32) * (3.0 if name == "latent" else 1.0)
    diff = np.abs(before.run(None, {name: x})[0] - after.run(None, {name: x})[0])
    assert diff.max() <= (1e-5 if not suffix else 1 / 255 + 1e-6)
    rewritten = onnx.load_from_string(cpu_graph(path))
    modes = [
        helper.get_attribute_value(a)
        for n in rewritten.graph.node
        if n.op_type == "Resize"
        for a in n.attribute
        if a.name == "mode"
    ]
    assert b"cubic" not in modes and b"linear" in modes  # the bilinear ones stay


def test_a_file_is_read_not_changed(tmp_path: Path) -> None:
    path = tmp_path / "r.onnx"
    onnx.save(resize_graph(16, 64), str(path))
    data = path.read_bytes()
    assert cpu_graph(path) != data and path.read_bytes() == data
