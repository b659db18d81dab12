"""`--precision int8`: the shipped int8 graphs on real held-out faces, the setting, the backends
that refuse them, and the quantize tool on a copy of the shipped fast models."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.backends import BackendUnavailable
from engines.data.datasets import load_hr
from engines.data.degrade import REALISTIC, degrade
from engines.fsr import (
    WEIGHTS_DIR,
    WeightsNotFound,
    files_for_precision,
    load_two_step,
    runs_on_cpu_onnxruntime,
)
from streamer.config import AppConfig, ConfigError, EnhanceConfig, validate
from streamer.enhancer import build_enhancer

SHARED_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"


@pytest.fixture(scope="module")
def test_faces(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """48 held-out All-Age-Faces test faces (aligned from the set's own landmarks: no detector)."""
    if not (SHARED_FACES / "allage").is_dir():
        pytest.skip(f"needs {SHARED_FACES}/allage (../shared data)")
    return load_hr("test", tmp_path_factory.mktemp("cache"), SHARED_FACES, datasets="allage", limit=48)


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-face PSNR (dB) of two uint8 batches."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))


def lr_faces(hr: np.ndarray, size: int, seed: int = 1) -> np.ndarray:
    """The benchmark's realistic degradation, as BGR crops (what the engine takes)."""
    return np.ascontiguousarray(degrade(hr, size, np.random.default_rng(seed), REALISTIC)[..., ::-1])


@pytest.mark.shared
def test_int8_engine_runs_from_the_config_with_precision_int8(test_faces: np.ndarray) -> None:
    cfg = EnhanceConfig(precision="int8", scale=8, entry="fixed", temporal=0.0)
    validate(replace(AppConfig(), enhance=cfg))
    enh = build_enhancer(cfg)
    try:
        out = enh.enhance(lr_faces(test_faces[:4], 16), [1, 2, 3, 4])
    finally:
        enh.close()
    assert enh.name == "fsr-x8-fast/onnxruntime-int8"
    assert out.shape == (4, 128, 128, 3) and out.dtype == np.uint8
    assert out.std() > 10  # a face, not a flat tile


@pytest.mark.shared
@pytest.mark.parametrize("scale, size", [(4, 32), (8, 16), (16, 8), (2, 64)])
def test_int8_output_is_close_to_fp32_on_real_faces(test_faces: np.ndarray, scale: int, size: int) -> None:
    """Measured (48 faces): int8 against fp32 median 42-48 dB; against the HR face int8 lost
    at most 0.04 dB. The bounds leave room for retrained weights but not for a broken graph."""
    lr = lr_faces(test_faces, size)
    fp32 = load_two_step(scale, "fast", "onnxruntime", temporal=0.0)
    int8 = load_two_step(scale, "fast", "onnxruntime", temporal=0.0, precision="int8")
    a, b = fp32.enhance(lr), int8.enhance(lr)
    hr = np.ascontiguousarray(test_faces[..., ::-1])
    assert np.median(psnr(a, b)) > 35.0
    assert psnr(hr, b).mean() > psnr(hr, a).mean() - 0.1


def test_the_setting_validates() -> None:
    assert EnhanceConfig().precision == "auto"
    with pytest.raises(ConfigError, match="precision"):
        validate(replace(AppConfig(), enhance=EnhanceConfig(precision="int4")))
    with pytest.raises(ConfigError, match="ONNX Runtime only"):
        validate(replace(AppConfig(), enhance=EnhanceConfig(precision="int8", backend="torch")))
    validate(replace(AppConfig(), enhance=EnhanceConfig(precision="int8", backend="onnxruntime")))


def test_backends_that_cannot_run_int8_say_so() -> None:
    pytest.importorskip("torch", reason="the torch backend needs torch")
    with pytest.raises(BackendUnavailable, match="does not run int8 graphs"):
        load_two_step(8, "fast", "torch", precision="int8")


def _copy_fast(dest: Path, manifest_names: tuple[str, ...] = ("step1_x8_fast", "step2_fast")) -> Path:
    """The shipped fp32 fast x8 models (no int8 files) in a folder of their own."""
    manifest = json.loads((WEIGHTS_DIR / "manifest.json").read_text())["models"]
    models = {}
    for name in manifest_names:
        shutil.copytree(WEIGHTS_DIR / name, dest / name, ignore=shutil.ignore_patterns("*_int8.onnx"))
        entry = dict(manifest[name])
        entry["files"] = {k: v for k, v in entry["files"].items() if not k.endswith("_int8")}
        entry.pop("int8", None)
        models[name] = entry
    (dest / "manifest.json").write_text(json.dumps({"models": models}))
    return dest


def _precision(precision: str, backend: str, weights: Path) -> str:
    """The precision of every x8 fast graph `precision` picks on `backend` (one, or "mixed")."""
    files = files_for_precision(precision, backend, 8, "fast", weights)
    found = {m.precision for m in (files.step1, files.encoder, files.decoder) if m is not None}
    return found.pop() if len(found) == 1 else "mixed"


def test_auto_precision_takes_int8_on_the_cpu_where_the_twins_exist(tmp_path: Path) -> None:
    """The default: int8 for the shipped single-frame models on ONNX Runtime's CPU provider,
    fp32 for a model without twins (multi-frame, or a folder never quantized) and on a GPU
    backend, which does not run int8."""
    if not runs_on_cpu_onnxruntime("auto"):
        pytest.skip("a GPU backend is usable here: auto precision is fp32 on it")
    engines = [
        build_enhancer(EnhanceConfig(scale=s, entry="fixed", frames=k)) for s, k in ((8, 1), (2, 1), (8, 3))
    ]
    try:
        assert [e.name for e in engines] == [
            "fsr-x8-fast/onnxruntime-int8",
            "fsr-x2-fast/onnxruntime-int8",
            "fsr-x8-fast-k3/onnxruntime",
        ]
    finally:
        for e in engines:
            e.close()
    bare = _copy_fast(tmp_path)
    assert _precision("auto", "auto", bare) == "fp32"
    assert load_two_step(8, "fast", "onnxruntime", weights_dir=bare, precision="auto").name == (
        "fsr-x8-fast/onnxruntime"
    )
    assert _precision("auto", "torch", WEIGHTS_DIR) == "fp32"
    assert _precision("auto", "tensorrt", WEIGHTS_DIR) == "fp32"
    assert _precision("fp32", "onnxruntime", WEIGHTS_DIR) == "fp32"


def test_a_missing_int8_file_is_a_clear_error(tmp_path: Path) -> None:
    weights = _copy_fast(tmp_path)
    with pytest.raises(WeightsNotFound, match="run.py train quantize"):
        load_two_step(8, "fast", "onnxruntime", weights_dir=weights, precision="int8")


@pytest.mark.shared
def test_quantize_writes_graphs_ort_runs_and_refuses_them_once_the_fp32_model_changes(
    tmp_path: Path, test_faces: np.ndarray
) -> None:
    pytest.importorskip("torch", reason="the quantize tool records into the manifest through the exporter")
    from engines.train.quantize import Calibration, quantize_weights

    weights = _copy_fast(tmp_path / "weights")
    done = quantize_weights(weights, Calibration(test_faces[:8], "allage", 0), command="test")
    assert sorted(done) == ["step1_x8_fast", "step2_fast"]
    manifest = json.loads((weights / "manifest.json").read_text())["models"]
    assert manifest["step1_x8_fast"]["files"]["onnx_int8"] == "step1_x8_fast/model_int8.onnx"
    assert set(manifest["step2_fast"]["int8"]["sources"]) == {"encoder", "decoder"}
    assert "## INT8" in (weights / "step2_fast" / "MODEL_CARD.md").read_text()

    enh = load_two_step(8, "fast", "onnxruntime", weights_dir=weights, precision="int8", temporal=0.0)
    lr = lr_faces(test_faces[8:16], 16)
    ref = load_two_step(8, "fast", "onnxruntime", weights_dir=weights, temporal=0.0).enhance(lr)
    assert np.median(psnr(ref, enh.enhance(lr))) > 30.0  # 8 calibration faces: looser than shipped

    (weights / "step1_x8_fast" / "model.onnx").write_bytes(
        (WEIGHTS_DIR / "step1_x4_fast" / "model.onnx").read_bytes()
    )
    with pytest.raises(WeightsNotFound, match="fp32 model changed"):
        load_two_step(8, "fast", "onnxruntime", weights_dir=weights, precision="int8")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["quantize", "--limit", "0"], "--limit must be >= 1"),
        (["step1", "--variant", "all"], "--variant all is for quantize only"),
    ],
)
def test_train_cli_rejects_bad_quantize_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch", reason="the training command line needs torch")
    from engines.train import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.run(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
