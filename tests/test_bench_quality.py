"""`run.py bench quality --quick` end to end on real held-out faces (needs ../shared data)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from benchmarks import quality

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
