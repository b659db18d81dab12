"""The two-step enhancer on real ONNX files (tiny random networks with the shipped I/O contract)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engines.base import Enhancer  # noqa: E402
from engines.fsr import (  # noqa: E402
    TwoStepEnhancer,
    WeightsNotFound,
    available_models,
    from_model_output,
    load_two_step,
    to_model_input,
)
from streamer.config import EnhanceConfig  # noqa: E402
from streamer.enhancer import build_enhancer  # noqa: E402

pytest.importorskip("torch", reason="the tiny test models are exported from torch")
import tiny_fsr  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_fsr.make_weights(tmp_path_factory.mktemp("weights"), scales=(8, 16))


def faces(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def ort(weights: Path, **kw: object) -> TwoStepEnhancer:
    return load_two_step(8, "fast", "onnxruntime", weights_dir=weights, **kw)  # type: ignore[arg-type]


def test_shapes_dtype_and_name(weights: Path) -> None:
    enh = ort(weights)
    out = enh.enhance(faces(3), [1, 2, 3])
    assert out.shape == (3, 128, 128, 3) and out.dtype == np.uint8
    assert enh.name == "fsr-x8-fast/onnxruntime"
    assert isinstance(enh, Enhancer) and enh.output_size == 128
    assert out.std() > 0, "a real network output, not a constant"


def test_x16_takes_8px_crops(weights: Path) -> None:
    enh = load_two_step(16, "fast", "onnxruntime", weights_dir=weights)
    assert enh.input_size == 8
    assert enh.enhance(faces(2, size=8)).shape == (2, 128, 128, 3)


def test_empty_batch(weights: Path) -> None:
    out = ort(weights).enhance(np.zeros((0, 16, 16, 3), np.uint8), [])
    assert out.shape == (0, 128, 128, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 32, 32, 3), np.uint8),
        np.zeros((2, 16, 16, 3), np.float32),
        np.zeros((16, 16, 3), np.uint8),
    ],
)
def test_bad_batch_shape_is_a_value_error(weights: Path, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected uint8 crops"):
        ort(weights).enhance(bad)


def test_track_ids_must_match_the_batch(weights: Path) -> None:
    with pytest.raises(ValueError, match="track ids"):
        ort(weights).enhance(faces(2), [1])


def test_batched_equals_one_by_one(weights: Path) -> None:
    enh = ort(weights, temporal=0.0)
    x = faces(5)
    whole = enh.enhance(x)
    rows = np.concatenate([enh.enhance(x[i : i + 1]) for i in range(5)])
    assert np.abs(whole.astype(int) - rows).max() <= 1


def test_colour_conversion_round_trips() -> None:
    x = faces(4)
    np.testing.assert_array_equal(from_model_output(to_model_input(x)), x)
    rgb = to_model_input(x)
    np.testing.assert_allclose(rgb[:, 0], x[..., 2] / 255.0, atol=1e-6)


def mean_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_temporal_state_smooths_a_track(weights: Path) -> None:
    a, b = faces(1, seed=1), faces(1, seed=2)
    plain = ort(weights, temporal=0.0)
    smooth = ort(weights, temporal=0.6)
    moved_plain = mean_change(plain.enhance(a, [7]), plain.enhance(b, [7]))
    moved_smooth = mean_change(smooth.enhance(a, [7]), smooth.enhance(b, [7]))
    assert moved_plain > 0.5
    assert moved_smooth < 0.8 * moved_plain


def test_tracks_are_smoothed_independently_and_forget_resets(weights: Path) -> None:
    a, b = faces(1, seed=1), faces(1, seed=2)
    plain = ort(weights, temporal=0.0)
    smooth = ort(weights, temporal=0.6)
    fresh_b = plain.enhance(b, [7])
    smooth.enhance(a, [7])
    np.testing.assert_array_equal(smooth.enhance(b, [8]), fresh_b)
    assert mean_change(smooth.enhance(b, [7]), fresh_b) > 0.1
    smooth.forget([7])
    np.testing.assert_array_equal(smooth.enhance(b, [7]), fresh_b)


def test_prior_strength_one_gives_the_mean_face_for_everyone(weights: Path) -> None:
    enh = ort(weights, prior_strength=1.0, temporal=0.0)
    out = enh.enhance(faces(3))
    assert np.abs(out[0].astype(int) - out[1]).max() <= 1 and np.abs(out[0].astype(int) - out[2]).max() <= 1
    assert mean_change(ort(weights, temporal=0.0).enhance(faces(3))[0], out[0]) > 0.1


def test_missing_variant_names_what_is_available(weights: Path) -> None:
    assert available_models(weights) == ["x8-fast", "x16-fast"]
    with pytest.raises(WeightsNotFound, match="available: x8-fast, x16-fast"):
        load_two_step(4, "fast", "onnxruntime", weights_dir=weights)
    with pytest.raises(WeightsNotFound, match="step1_x8_quality"):
        load_two_step(8, "quality", "onnxruntime", weights_dir=weights)


def test_factory_builds_fsr_from_config(weights: Path) -> None:
    cfg = EnhanceConfig(engine="fsr", scale=8, backend="auto", weights_dir=str(weights), temporal=0.3)
    enh = build_enhancer(cfg)
    assert isinstance(enh, TwoStepEnhancer)
    assert enh.name.startswith("fsr-x8-fast/")
    assert enh.enhance(faces(2), [1, 2]).shape == (2, 128, 128, 3)
    enh.close()


def test_torch_backend_agrees_with_onnxruntime(weights: Path) -> None:
    x = faces(4, seed=3)
    a = ort(weights, temporal=0.0).enhance(x)
    b = load_two_step(8, "fast", "torch", weights_dir=weights, temporal=0.0).enhance(x)
    assert np.abs(a.astype(int) - b).max() <= 1


def test_shipped_weights_load_when_present() -> None:
    if not available_models():
        pytest.skip("no shipped weights in engines/weights yet")
    name = available_models()[0]
    scale, variant = int(name[1:].split("-")[0]), name.split("-")[1]
    enh = load_two_step(scale, variant, "onnxruntime")
    out = enh.enhance(faces(2, size=enh.input_size), [1, 2])
    assert out.shape == (2, 128, 128, 3)


def test_auto_moves_on_when_a_backend_cannot_open_all_three_models(
    weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT is claimed present (a GPU that is not here); its import fails for real."""
    import engines.backends as backends

    if backends.unavailable_reason("tensorrt") is None:
        pytest.skip("TensorRT really is here")
    monkeypatch.setattr(backends, "unavailable_reason", lambda name: None if name != "torch" else "no GPU")
    enh = load_two_step(8, "fast", "auto", weights_dir=weights)
    assert enh.name == "fsr-x8-fast/onnxruntime"


def test_step2_alone_enhances_64_px_faces(weights: Path) -> None:
    """x2 is the MR entry: a face of ~64 px skips step 1 and goes through the prior only."""
    enh = load_two_step(2, "fast", "onnxruntime", weights_dir=weights)
    try:
        assert (enh.input_size, enh.output_size, enh.step1) == (64, 128, None)
        crops = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
        out = enh.enhance(crops, [1, 2, 3])
        assert out.shape == (3, 128, 128, 3) and out.dtype == np.uint8
    finally:
        enh.close()


@pytest.fixture(scope="module")
def residual_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real fast architectures (residual step 1, residual prior), exported by the real
    exporter; the zero-init residual tails are given small random weights so they do something."""
    import torch

    from engines.arch import build
    from engines.train import configs as C
    from engines.train.export import export_restorer, export_step2

    root = tmp_path_factory.mktemp("residual_weights")
    torch.manual_seed(0)
    kw1 = C.step1_kwargs(8, "fast")
    step1 = build(C.STEP1_ARCH, kw1)
    torch.nn.init.normal_(step1.tail.weight, std=0.02)
    export_restorer("step1", step1, C.STEP1_ARCH, kw1, root, "step1_x8_fast")
    kw2, arch2 = C.step2_kwargs("fast"), C.step2_arch("fast")
    prior = build(arch2, kw2)
    torch.nn.init.normal_(prior.decoder.tail.weight, std=0.02)
    mean = np.random.default_rng(0).standard_normal(prior.prior_shape).astype(np.float32)
    export_step2(prior, arch2, kw2, mean, root, "step2_fast")
    return root


def test_residual_prior_keeps_each_face_at_full_prior_strength(residual_weights: Path) -> None:
    """With the old prior, strength 1 decoded the mean face for everyone; the residual prior's MR
    channels are not interpolated, so each face stays itself, and the code still matters."""
    x = faces(2, seed=3)
    strong = ort(residual_weights, prior_strength=1.0, temporal=0.0).enhance(x)
    plain = ort(residual_weights, prior_strength=0.0, temporal=0.0).enhance(x)
    assert mean_change(strong[0], strong[1]) > 20
    assert 0.05 < mean_change(strong, plain) < 10


def test_step2_alone_takes_native_64px_faces(residual_weights: Path) -> None:
    import cv2

    enh = load_two_step(2, "fast", "onnxruntime", weights_dir=residual_weights, temporal=0.5)
    mr = np.random.default_rng(4).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    mr = np.stack([cv2.resize(m, (64, 64), interpolation=cv2.INTER_CUBIC) for m in mr])  # smooth faces
    out = enh.enhance(mr, [1, 2, 3])
    assert out.shape == (3, 128, 128, 3) and out.dtype == np.uint8
    bic = np.stack([cv2.resize(m, (128, 128), interpolation=cv2.INTER_CUBIC) for m in mr])
    assert mean_change(out[:, 8:-8, 8:-8], bic[:, 8:-8, 8:-8]) < 6  # a residual over bicubic
    with pytest.raises(ValueError, match="64, 64"):
        enh.enhance(faces(1))
