"""ONNX export: the file contract with the inference backends, and ONNX Runtime = PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from engines.arch import build
from engines.train import configs as C
from engines.train.export import export_restorer, export_step2
from engines.train.init_weights import export_random

TOL = 1e-4
"""ONNX Runtime vs PyTorch, max abs difference on [0, 1] outputs (float32 on CPU)."""
SHIPPED = Path(__file__).resolve().parents[1] / "engines" / "weights"


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _torch_model(weights: Path, name: str) -> torch.nn.Module:
    entry = json.loads((weights / "manifest.json").read_text())["models"][name]
    net = build(entry["arch"], entry["arch_kwargs"])
    net.load_state_dict(torch.load(weights / name / "model.pt", map_location="cpu"))
    return net.eval()


def test_step1_export_matches_torch_with_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    kw = C.step1_kwargs(8, "fast")
    net = build(C.STEP1_ARCH, kw)
    torch.nn.init.normal_(net.tail.weight, std=0.05)  # untrained, the residual is zero
    export_restorer("step1", net, C.STEP1_ARCH, kw, tmp_path, "step1_x8_fast")
    path = tmp_path / "step1_x8_fast/model.onnx"
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 17
    assert [i.name for i in model.graph.input] == ["lr"] and [o.name for o in model.graph.output] == ["mr"]
    net = _torch_model(tmp_path, "step1_x8_fast")
    for n in (1, 5):
        x = np.random.default_rng(n).random((n, 3, 16, 16), dtype=np.float32)
        got = _run(path, x)
        assert got.shape == (n, 3, 64, 64)
        with torch.no_grad():
            np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), atol=TOL)


def test_step2_export_contract_and_parity(tmp_path: Path) -> None:
    torch.manual_seed(1)
    kw = C.step2_kwargs("fast")
    arch = C.step2_arch("fast")
    prior = build(arch, kw)
    for p in prior.parameters():  # untrained, the residual is zero: make the parity check see it
        torch.nn.init.normal_(p, std=0.05)
    mean = np.random.default_rng(0).standard_normal(prior.prior_shape).astype(np.float32)
    export_step2(prior, arch, kw, mean, tmp_path, "step2_fast")
    entry = json.loads((tmp_path / "manifest.json").read_text())["models"]["step2_fast"]
    assert entry["kind"] == "step2" and entry["latent_shape"] == [64, 16, 16]
    assert entry["prior_shape"] == [16, 16, 16]
    assert entry["gmac"] > 0 and entry["arch"] == arch
    d = tmp_path / "step2_fast"
    np.testing.assert_array_equal(np.load(d / "latent_mean.npy"), mean)
    x = np.random.default_rng(2).random((3, 3, 64, 64), dtype=np.float32)
    z = _run(d / "encoder.onnx", x)
    hr = _run(d / "decoder.onnx", z)
    assert z.shape == (3, 64, 16, 16) and hr.shape == (3, 3, 128, 128)
    net = _torch_model(tmp_path, "step2_fast")
    with torch.no_grad():
        np.testing.assert_allclose(z, net.encode(torch.from_numpy(x)).numpy(), atol=TOL)
        np.testing.assert_allclose(hr, net.decode(torch.from_numpy(z)).numpy(), atol=TOL)
    with pytest.raises(ValueError, match="latent_mean"):
        export_step2(prior, arch, kw, np.zeros((4, 4), np.float32), tmp_path, "bad")


def test_random_layout_is_complete(tmp_path: Path) -> None:
    names = export_random(tmp_path, variants=("fast",))
    manifest = json.loads((tmp_path / "manifest.json").read_text())["models"]
    assert set(names) == set(manifest) == {"step2_fast", "step1_x4_fast", "step1_x8_fast", "step1_x16_fast"}
    for e in manifest.values():
        for rel in e["files"].values():
            assert (tmp_path / rel).exists(), rel


def test_shipped_weights_follow_the_contract() -> None:
    manifest = json.loads((SHIPPED / "manifest.json").read_text())["models"]
    for v in C.VARIANTS:
        assert f"step2_{v}" in manifest
        for sc, s in C.SCALES.items():
            e = manifest[f"step1_x{sc}_{v}"]
            assert (e["kind"], e["scale_in"], e["scale_out"]) == ("step1", s, 64)
            for rel in e["files"].values():
                assert (SHIPPED / rel).exists(), rel
    assert manifest["step1_x8_fast"]["gmac"] + manifest["step2_fast"]["gmac"] <= C.FAST_BUDGET_GMAC
    net = _torch_model(SHIPPED, "step1_x8_fast")
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(
            _run(SHIPPED / "step1_x8_fast/model.onnx", x), net(torch.from_numpy(x)).numpy(), atol=TOL
        )
