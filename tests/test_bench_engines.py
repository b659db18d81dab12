"""The engine speed benchmark runs end to end in --quick mode (no timing assertions)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from benchmarks import engines as bench
from engines.fsr import available_models


def test_quick_run_writes_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if "x8-fast" not in available_models():
        pytest.skip("no shipped x8-fast weights in engines/weights")
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out_json, out_png = tmp_path / "engines.json", tmp_path / "engines.png"
    args = parser.parse_args(
        [
            "--quick",
            "--backends",
            "onnxruntime",
            "--threads",
            "1",
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
        ]
    )
    assert bench.main(args) == 0
    table = capsys.readouterr().out
    assert "bicubic" in table and "fsr-x8-fast" in table and "skipped: --quick" in table
    result = json.loads(out_json.read_text())
    assert result["batches"] == [1, 4] and result["reference"] == "fsr-x8-fast"
    timed = [r for r in result["rows"] if "skipped" not in r]
    assert {r["engine"] for r in timed} == {"bicubic", "fsr-x8-fast", "fsr-x8-fast-int8"}
    for r in timed:
        assert r["ms_per_face_p50"] > 0 and r["ms_per_face_p95"] >= r["ms_per_face_p50"]
        assert r["cpu_ms_per_face_p50"] > 0 and r["cpu_ms_per_face_p95"] >= r["cpu_ms_per_face_p50"]
        assert r["repeats"] >= 3 and "x_ours" in r
    ours = [r for r in timed if r["engine"] == "fsr-x8-fast"]
    assert all(abs(r["x_ours"] - 1.0) < 1e-9 for r in ours)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
