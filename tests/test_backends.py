"""Backend registry, `auto` selection, and numerical agreement of the backends on real ONNX files."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engines.backends import (  # noqa: E402
    BATCH_BUCKETS,
    BackendOptions,
    ModelSpec,
    bucket_for,
    cuda_unavailable_reason,
    open_backend,
    resolve,
    run_chunked,
    unavailable_reason,
)

torch = pytest.importorskip("torch", reason="the PyTorch backend and the tiny test models need torch")
import tiny_fsr  # noqa: E402

TOLERANCE_FP32 = 1e-4
"""ONNX Runtime vs PyTorch, both fp32 on the CPU: max absolute difference on [0, 1] images."""
TOLERANCE_FP16 = 2e-2
"""fp16 GPU backends (PyTorch CUDA graphs, TensorRT) vs PyTorch fp32 CPU."""


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_fsr.make_weights(tmp_path_factory.mktemp("weights"), scales=(8,))


def step1_spec(weights: Path) -> ModelSpec:
    folder = weights / "step1_x8_fast"
    return ModelSpec(
        "step1_x8_fast",
        folder / "model.onnx",
        "lr",
        "mr",
        arch="tiny_fsr:TinyStep1",
        arch_kwargs={"in_size": 16},
        torch_weights=folder / "model.pt",
    )


def step2_spec(weights: Path, part: str) -> ModelSpec:
    folder = weights / "step2_fast"
    onnx, io = (
        ("encoder.onnx", ("mr", "latent"))
        if part.startswith("encode")
        else ("decoder.onnx", ("latent", "hr"))
    )
    return ModelSpec(
        f"step2_fast.{part}",
        folder / onnx,
        *io,
        arch="tiny_fsr:TinyStep2",
        torch_weights=folder / "model.pt",
        torch_part=part,
    )


def run(backend, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return backend.run({backend.input_spec.name: x})[backend.output_spec.name]


def test_unknown_backend_lists_valid_ones(weights: Path) -> None:
    with pytest.raises(ValueError, match="valid: auto, tensorrt, torch, onnxruntime"):
        open_backend("openvino", step1_spec(weights))
    with pytest.raises(ValueError, match="unknown backend"):
        unavailable_reason("openvino")


def test_auto_on_a_cpu_machine_says_why_gpu_backends_were_skipped(caplog: pytest.LogCaptureFixture) -> None:
    if cuda_unavailable_reason() is None:
        pytest.skip("this machine has a CUDA GPU; auto would rightly pick a GPU backend")
    with caplog.at_level(logging.INFO, logger="engines.backends"):
        order = resolve("auto")
    assert order == ["onnxruntime"]
    text = caplog.text
    assert "skipping tensorrt" in text and "skipping torch" in text


def test_explicit_backend_is_not_second_guessed() -> None:
    assert resolve("torch") == ["torch"]
    assert resolve("onnxruntime") == ["onnxruntime"]


def test_onnxruntime_session_is_configured_for_a_shared_cpu(weights: Path) -> None:
    backend = open_backend("onnxruntime", step1_spec(weights), BackendOptions(threads=2))
    opts = backend.session.get_session_options()
    assert opts.intra_op_num_threads == 2
    assert opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert backend.input_spec.name == "lr" and backend.input_spec.shape[1:] == (3, 16, 16)
    assert backend.output_spec.name == "mr" and backend.output_spec.shape[1] == 3


@pytest.mark.parametrize("which", ["step1", "encoder", "decoder"])
def test_onnxruntime_matches_torch_on_cpu(weights: Path, which: str) -> None:
    spec = {
        "step1": step1_spec(weights),
        "encoder": step2_spec(weights, "encoder"),
        "decoder": step2_spec(weights, "decoder"),
    }[which]
    ort_b = open_backend("onnxruntime", spec)
    torch_b = open_backend("torch", spec, BackendOptions(device="cpu"))
    assert torch_b.name == "torch-cpu"
    x = np.random.default_rng(1).random((5, *ort_b.input_spec.shape[1:]), dtype=np.float32)
    a, b = run(ort_b, x), run(torch_b, x)
    assert a.shape == b.shape and a.shape[0] == 5
    assert np.abs(a - b).max() < TOLERANCE_FP32


def test_torch_part_may_be_a_method(weights: Path) -> None:
    x = np.random.default_rng(2).random((3, 3, 64, 64), dtype=np.float32)
    via_module = run(open_backend("torch", step2_spec(weights, "encoder"), BackendOptions(device="cpu")), x)
    via_method = run(open_backend("torch", step2_spec(weights, "encode"), BackendOptions(device="cpu")), x)
    np.testing.assert_array_equal(via_module, via_method)


def test_bad_input_is_a_clear_error(weights: Path) -> None:
    backend = open_backend("onnxruntime", step1_spec(weights))
    with pytest.raises(ValueError, match="must have shape"):
        backend.run({"lr": np.zeros((1, 3, 32, 32), np.float32)})
    with pytest.raises(ValueError, match="missing"):
        backend.run({"mr": np.zeros((1, 3, 16, 16), np.float32)})


def test_torch_backend_splits_large_batches_and_handles_empty_ones(weights: Path) -> None:
    backend = open_backend("torch", step1_spec(weights), BackendOptions(device="cpu"))
    x = np.random.default_rng(3).random((40, 3, 16, 16), dtype=np.float32)
    whole = run(backend, x)
    rows = np.concatenate([run(backend, x[i : i + 1]) for i in range(len(x))])
    assert np.abs(whole - rows).max() < 1e-5
    assert run(backend, x[:0]).shape == (0, 3, 64, 64)


def test_buckets_and_chunks() -> None:
    assert [bucket_for(n) for n in (1, 2, 3, 5, 8, 9, 32)] == [1, 2, 4, 8, 8, 16, 32]
    with pytest.raises(ValueError, match="exceeds"):
        bucket_for(BATCH_BUCKETS[-1] + 1)
    seen: list[int] = []

    def record(b: np.ndarray) -> np.ndarray:
        seen.append(len(b))
        return b * 2

    out = run_chunked(record, np.arange(70, dtype=np.float32), 32)
    assert seen == [32, 32, 6]
    np.testing.assert_array_equal(out, np.arange(70) * 2)


def test_missing_onnx_file_is_reported(tmp_path: Path) -> None:
    spec = ModelSpec("nothing", tmp_path / "absent.onnx", "lr", "mr")
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        open_backend("onnxruntime", spec)


def test_explicit_tensorrt_without_tensorrt_says_what_to_install(weights: Path) -> None:
    if unavailable_reason("tensorrt") is None:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(Exception, match="TensorRT|tensorrt|CUDA"):
        open_backend("tensorrt", step1_spec(weights))


@pytest.mark.gpu
def test_torch_cuda_fp16_graphs_match_cpu(weights: Path) -> None:
    if (reason := cuda_unavailable_reason()) is not None:
        pytest.skip(f"needs a CUDA GPU: {reason}")
    for spec in (step1_spec(weights), step2_spec(weights, "encoder"), step2_spec(weights, "decoder")):
        gpu = open_backend("torch", spec, BackendOptions(device="cuda", precision="fp16", cuda_graphs=True))
        assert gpu.name == "torch-cuda-fp16-graphs"
        cpu = open_backend("torch", spec, BackendOptions(device="cpu"))
        rng = np.random.default_rng(4)
        for n in (1, 3, 8, 33):
            x = rng.random((n, *gpu.input_spec.shape[1:]), dtype=np.float32)
            assert np.abs(run(gpu, x) - run(cpu, x)).max() < TOLERANCE_FP16 * max(
                1.0, float(np.abs(run(cpu, x)).max())
            )
        gpu.close()


@pytest.mark.gpu
def test_tensorrt_engine_matches_torch(weights: Path, tmp_path: Path) -> None:
    if (reason := unavailable_reason("tensorrt")) is not None:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {reason}")
    spec = step1_spec(weights)
    opts = BackendOptions(trt_cache_dir=tmp_path / "trt")
    trt_b = open_backend("tensorrt", spec, opts)
    assert trt_b.rebuilt
    again = open_backend("tensorrt", spec, opts)
    assert not again.rebuilt
    cpu = open_backend("torch", spec, BackendOptions(device="cpu"))
    x = np.random.default_rng(5).random((9, 3, 16, 16), dtype=np.float32)
    assert np.abs(run(trt_b, x) - run(cpu, x)).max() < TOLERANCE_FP16


def test_auto_falls_back_when_a_backend_fails_to_open(
    weights: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Pretend this machine has TensorRT and a GPU (they are not here): opening it really fails,
    and `auto` must log that and move on to the next backend instead of crashing."""
    import engines.backends as backends

    if unavailable_reason("tensorrt") is None:
        pytest.skip("TensorRT really is here")
    monkeypatch.setattr(backends, "unavailable_reason", lambda name: None if name != "torch" else "no GPU")
    with caplog.at_level(logging.WARNING, logger="engines.backends"):
        backend = open_backend("auto", step1_spec(weights))
    assert backend.name == "onnxruntime"
    assert "tensorrt failed to open" in caplog.text
