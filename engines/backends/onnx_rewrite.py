"""Rewrites of an ONNX graph that ONNX Runtime runs faster on a CPU, with the same results.

ONNX Runtime's cubic `Resize` is slow on the CPU: the residual models' bicubic base image cost
6.1 ms per face in step 2's decoder (3 x 64 x 64 -> 128 x 128) and 1.9 ms in step 1 x8
(16 -> 64), about half of the engine, where all the decoder's convolutions took 4 ms (ORT
profiler, batch 4, one thread). Between fixed sizes a cubic resize is a fixed linear map,
separable in height and width: Y = A_h X A_w^T, two small MatMuls with constant matrices. The
matrices use Resize's own definition (half-pixel centres, `cubic_coeff_a`, taps beyond the edge
clamped to it, `exclude_outside` 0), so the result equals ONNX Runtime's within float rounding
(2.4e-7 on [0, 1] images, tests/test_onnx_rewrite.py). Only nodes whose input and output sizes
are static are rewritten; anything else is left as it is.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def cubic_matrix(n_in: int, n_out: int, a: float = -0.75) -> np.ndarray:
    """(n_out, n_in) float32: row o holds the weights ONNX Resize (cubic, half_pixel) gives the
    input samples for output sample o."""
    m = np.zeros((n_out, n_in), np.float64)
    scale = n_out / n_in
    for o in range(n_out):
        x = (o + 0.5) / scale - 0.5
        base = math.floor(x)
        t = x - base
        for k in range(-1, 3):
            d = abs(t - k)
            if d <= 1:
                w = (a + 2) * d**3 - (a + 3) * d**2 + 1
            elif d < 2:
                w = a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
            else:
                continue
            m[o, min(max(base + k, 0), n_in - 1)] += w
    return m.astype(np.float32)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _static_shapes(model: Any) -> dict[str, tuple[Any, ...]]:
    """Tensor name -> shape (ints where known, None for the batch) from ONNX's shape inference
    with data propagation, which follows the Shape/Slice/Concat chains the exporter writes for
    the sizes (tens of milliseconds; ONNX Runtime's symbolic inference needs seconds to import)."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model, data_prop=True)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {
        v.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim)
        for v in values
    }


def _rewritable(node: Any, shapes: dict[str, tuple[Any, ...]]) -> tuple[int, int, int, int] | None:
    """(h_in, w_in, h_out, w_out) of a cubic half-pixel Resize between static sizes, else None."""
    if node.op_type != "Resize":
        return None
    attrs = _attrs(node)
    if (
        attrs.get("mode", b"nearest") != b"cubic"
        or attrs.get("coordinate_transformation_mode", b"half_pixel") != b"half_pixel"
        or attrs.get("exclude_outside", 0) != 0
        or attrs.get("antialias", 0) != 0
    ):
        return None
    src, dst = shapes.get(node.input[0]), shapes.get(node.output[0])
    if src is None or dst is None or len(src) != 4 or len(dst) != 4 or src[1] != dst[1]:
        return None
    dims = (src[2], src[3], dst[2], dst[3])
    if any(not isinstance(d, int) or d <= 0 for d in dims):
        return None
    return dims


def _prune(graph: Any) -> None:
    """Drop the nodes and constants nothing reads any more (the size computations of rewritten
    Resizes); ONNX Runtime would warn about each one it finds."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def rewrite_cubic_resize(model: Any) -> int:
    """Replace every rewritable cubic Resize of `model` (an onnx.ModelProto, changed in place) by
    two MatMuls; returns how many were replaced."""
    from onnx import helper, numpy_helper

    shapes = _static_shapes(model)
    graph = model.graph
    count = 0
    for index, node in reversed(list(enumerate(graph.node))):
        dims = _rewritable(node, shapes)
        if dims is None:
            continue
        h_in, w_in, h_out, w_out = dims
        a = float(_attrs(node).get("cubic_coeff_a", -0.75))
        stem = f"{node.name or node.output[0]}_cubic"
        rows = numpy_helper.from_array(cubic_matrix(h_in, h_out, a), f"{stem}_rows")
        cols = numpy_helper.from_array(np.ascontiguousarray(cubic_matrix(w_in, w_out, a).T), f"{stem}_cols")
        graph.initializer.extend([rows, cols])
        wide = helper.make_node("MatMul", [node.input[0], cols.name], [f"{stem}_wide"], name=f"{stem}_w")
        tall = helper.make_node("MatMul", [rows.name, f"{stem}_wide"], [node.output[0]], name=f"{stem}_h")
        graph.node.remove(node)
        graph.node.insert(index, tall)
        graph.node.insert(index, wide)
        count += 1
    if count:
        _prune(graph)
    return count
