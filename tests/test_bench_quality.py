"""`run.py bench quality --quick` end to end on real held-out faces (needs ../shared data)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from benchmarks import quality
from engines.fsr import WEIGHTS_DIR

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.mark.shared
def test_quick_quality_benchmark_writes_table_json_and_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cached = (ROOT / "cache" / "data" / "celeba_test_128.npz").exists()
    if not cached and not (SHARED / "data" / "faces" / "celeba").is_dir():
        pytest.skip("needs ../shared/data/faces/celeba (or its cache)")
    if not (SHARED / "data" / "faces" / "allage").is_dir():
        pytest.skip("needs ../shared/data/faces/allage")
    parser = argparse.ArgumentParser()
    quality.add_arguments(parser)
    args = parser.parse_args(
        ["--quick", "--scales", "8", "--json", str(tmp_path / "q.json"), "--plot", str(tmp_path / "q.png")]
    )
    assert quality.main(args) == 0
    out = json.loads((tmp_path / "q.json").read_text())
    assert list(out["sets"]) == ["celeba", "allage"]
    for name, res in out["sets"].items():
        row = res["scales"]["8"]
        assert res["faces"] == 16
        assert row["bicubic"]["psnr"] > 10 and 0 < row["bicubic"]["ssim"] <= 1
        assert row["two-step (ours)"] is not None and -1 <= row["two-step (ours)"]["identity"] <= 1
        assert set(res["temporal"]["8"]) >= {"bicubic", "two-step, no smoothing", "two-step, exponential 0.5"}
        assert set(res["step2_alone"]) == {"bicubic", "step 2 alone"}
        assert (tmp_path / f"q_{name}.png").stat().st_size > 10_000
    assert "two-step (ours)" in capsys.readouterr().out


@pytest.mark.shared
@pytest.mark.skipif(
    not (SHARED / "data" / "videos" / "talking").is_dir(), reason="needs ../shared/data/videos/talking"
)
def test_video_ground_truth_is_registered_with_the_pipelines_own_crops() -> None:
    """The real-video benchmark compares against the full-resolution face cut through the same
    alignment: area-downscaled to the LR side it must match the pipeline's LR crop (same pixels,
    only blur and H.264 apart), far better than the same comparison one LR pixel off."""
    import cv2
    import numpy as np

    from benchmarks import quality_video as qv

    clip = sorted(qv.CLIPS.glob("*.mp4"))[0]
    full = qv.read_frames(clip, 12)
    side = qv.face_side(full, every=6)
    small = qv.small_video(full, side / 16, 26)
    tracks = qv.observe(full, small, 8)
    assert tracks and max(len(t.lr) for t in tracks.values()) >= 10

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))

    same, shifted = [], []
    for t in tracks.values():
        for lr, gt in zip(t.lr, t.gt, strict=True):
            down = cv2.resize(cv2.GaussianBlur(gt, (0, 0), 0.4 * 8), (16, 16), interpolation=cv2.INTER_AREA)
            same.append(psnr(down[2:-2, 2:-2], lr[2:-2, 2:-2]))
            shifted.append(psnr(np.roll(down, 1, axis=1)[2:-2, 2:-2], lr[2:-2, 2:-2]))
    assert np.median(same) > 24 and np.median(same) > np.median(shifted) + 2, (
        np.median(same),
        np.median(shifted),
    )


def test_int8_rows_need_fresh_twins_of_every_model_the_run_uses(tmp_path: Path) -> None:
    """A retrained step 1 beside its old int8 twin (the manifest then no longer vouches for it)
    gives no int8 rows, not a loss measured on a model that is gone."""
    manifest = json.loads((WEIGHTS_DIR / "manifest.json").read_text())["models"]
    names = ("step1_x4_fast", "step1_x8_fast", "step2_fast")
    for name in names:
        shutil.copytree(WEIGHTS_DIR / name, tmp_path / name)
    models = {name: manifest[name] for name in names}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": models}))
    args = argparse.Namespace(variant="fast", weights=tmp_path, threads=1)
    assert quality.int8_models(args, [4, 8]) is not None
    models["step1_x4_fast"] = {k: v for k, v in models["step1_x4_fast"].items() if k != "int8"}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": models}))
    assert quality.int8_models(args, [8]) is not None
    assert quality.int8_models(args, [4, 8]) is None
