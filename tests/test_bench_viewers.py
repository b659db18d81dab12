"""bench viewers end to end, small: both modes, real viewer processes, a table and JSON."""

import argparse
import json
from pathlib import Path

import pytest

from benchmarks import viewers


def test_quick_viewers_bench_prints_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    viewers.add_arguments(parser)
    out = tmp_path / "viewers.json"
    args = parser.parse_args(
        ["--viewers", "1,2", "--seconds", "2", "--warmup", "1", "--width", "320", "--height", "240"]
        + ["--fps", "15", "--json", str(out)]
    )
    assert viewers.main(args) == 0
    printed = capsys.readouterr().out
    assert "x 1 viewer" in printed and "1st frame p95 ms" in printed
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["viewers"]) for r in rows] == [
        ("per-viewer", 1),
        ("per-viewer", 2),
        ("shared", 1),
        ("shared", 2),
    ]
    for row in rows:
        assert row["cpu_s_per_s"] > 0 and row["viewer_fps_median"] > 0
        assert row["g2g"]["n"] > 0 and 0 < row["g2g"]["p50_ms"] < 5000
        assert len(row["first_frame_ms"]) == row["viewers"]
    assert rows[0]["encoded_frames"] == {} and rows[1]["encoded_frames"] == {}
    shared = rows[3]["encoded_frames"]["enhanced/vp8/full"]
    assert shared > 0, "the shared run encoded through the shared encoder"
