import argparse
import json

from benchmarks import pipeline


def test_quick_pipeline_bench_prints_table_and_json(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    pipeline.add_arguments(parser)
    out = tmp_path / "pipe.json"
    args = parser.parse_args(
        [
            "--videos",
            str(tmp_path),
            "--frames",
            "6",
            "--engines",
            "bicubic",
            "--live-precisions",
            "fp32",
            "--json",
            str(out),
        ]
    )
    assert pipeline.main(args) == 0
    table = capsys.readouterr().out
    assert "decode only" in table and "detect p95" in table and "cpu p95" in table
    rows = json.loads(out.read_text())
    assert [r["config"] for r in rows] == [
        "decode only",
        "bicubic",
        "bicubic overlap",
        "live vp8",
        "live h264",
    ]
    for row in rows[3:]:
        assert row["frames"] == 6 and row["faces_per_frame"] >= 4
        assert row["encode_speed"] == "fast" and row["precision"] == "fp32"
        assert row["stages"]["encode"]["count"] == 6
    # The file rows, in one thread and overlapped, process the same frames and faces.
    assert [r["overlapped"] for r in rows[1:3]] == [False, True]
    for row in rows[1:3]:
        assert row["frames"] == 6 and row["faces_per_frame"] == rows[1]["faces_per_frame"] >= 4
    assert "Overlap, demo-720p, bicubic:" in table
    # CPU per frame is measured over the frames after the first, and the pipeline costs more
    # than decoding alone.
    assert all(r["cpu_frames"] == 5 for r in rows)
    assert 0 < rows[0]["cpu_ms"] < rows[1]["cpu_ms"]
