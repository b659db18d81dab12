import argparse
import json

from benchmarks import pipeline


def test_quick_pipeline_bench_prints_table_and_json(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    pipeline.add_arguments(parser)
    out = tmp_path / "pipe.json"
    args = parser.parse_args(
        ["--videos", str(tmp_path), "--frames", "6", "--engines", "bicubic", "--json", str(out)]
    )
    assert pipeline.main(args) == 0
    table = capsys.readouterr().out
    assert "decode only" in table and "detect p95" in table
    rows = json.loads(out.read_text())
    assert [r["config"] for r in rows] == ["decode only", "bicubic", "live"]
    assert rows[2]["frames"] == 6 and rows[2]["faces_per_frame"] >= 4
    assert rows[1]["frames"] == 6 and rows[1]["faces_per_frame"] >= 4
