"""`bench latency --browser` end to end, small: a real `run.py serve` process, a real headless
Chromium on its dashboard, one row per view, a table and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from browser import MARKS

from benchmarks import latency

pytestmark = MARKS


def test_browser_rows_report_what_chromium_received_per_view(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    latency.add_arguments(parser)
    out = tmp_path / "browser.json"
    args = parser.parse_args(
        ["--browser", "--skip-latency", "--skip-bitrate", "--seconds", "3", "--browser-warmup", "2"]
        + ["--serve-args", "--engine bicubic", "--browser-views", "split", "enhanced", "--json", str(out)]
    )
    assert latency.main(args) == 0
    printed = capsys.readouterr().out
    assert "received fps" in printed and "target >= 25 fps received" in printed
    split, enhanced = json.loads(out.read_text())["browser"]
    assert (split["view"], enhanced["view"]) == ("split", "enhanced")
    assert split["command"] == "run.py serve --engine bicubic" and split["seconds"] >= 3
    for row in (split, enhanced):
        assert row["tracks"]["enhanced"]["fps"] > 0 and row["tracks"]["enhanced"]["frames_decoded"] > 0
        assert row["server_fps"] > 0 and row["server_cpu_ms_per_frame"] > 0
        assert row["server_cpu_per_second"]["n"] >= 2
        assert row["tracks"]["enhanced"]["frames_dropped"] >= 0
    assert split["tracks"]["original"]["fps"] > 0
    # Enhanced view: the dashboard asked the server not to send the original, and it did not.
    assert enhanced["tracks"]["original"]["frames_decoded"] <= 1, enhanced["tracks"]["original"]
