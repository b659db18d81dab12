"""The installed command line, end to end: `run.py enhance` on a real clip of real faces, and the
one-line errors users get for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import write_clip

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _faces_clip(path: Path, frames: int = 16, fps: int = 15) -> None:
    """A real photo of six people (from the insightface wheel) drifting by a pixel a frame, with a
    tone on the audio track, so the file job has faces to track and audio to copy."""
    spec = find_spec("insightface")
    assert spec is not None and spec.origin is not None
    photo = cv2.imread(str(Path(spec.origin).parent / "data/images/t1.jpg"))
    photo = cv2.resize(photo, (640, 443), interpolation=cv2.INTER_AREA)

    def drifting(i: int, width: int, height: int) -> np.ndarray:
        return np.ascontiguousarray(photo[8 + i % 4 : 8 + i % 4 + height, 16 + i : 16 + i + width])

    write_clip(path, size=(608, 416), frames=frames, fps=fps, audio=True, image_fn=drifting)


def _enhance(src: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`run.py enhance` of a small clip (detection at 640 px: its faces are large)."""
    return _run("enhance", "--source", str(src), "--out", str(out), "--detect-width", "640", *flags)


def test_enhance_writes_same_frames_timing_and_audio(tmp_path):
    src, out, stats = tmp_path / "faces.mp4", tmp_path / "out.mp4", tmp_path / "stats.json"
    _faces_clip(src)
    proc = _enhance(src, out, "--json", str(stats), "--mode", "upscale", "--upscale", "2", "--entry", "fixed")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "p50 ms" in proc.stdout and "enhance" in proc.stdout
    with av.open(str(src)) as c:
        pts_in = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (1216, 832)
        assert c.streams.audio, "audio was not passed through"
        pts_out = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert len(pts_out) == len(pts_in)
    np.testing.assert_allclose(np.diff(pts_out), np.diff(pts_in), atol=1e-3)
    summary = json.loads(stats.read_text())
    assert summary["frames"] == len(pts_in)
    assert summary["faces_per_frame"] >= 5, "t1.jpg shows six faces"
    assert summary["engine"].startswith("fsr-x8")
    assert {"detect", "track", "crop", "enhance", "composite", "encode"} <= set(summary["stages"])


def _bad_source(kind: str, folder: Path) -> str:
    if kind == "empty":
        (folder / "empty.mp4").write_bytes(b"")
        return str(folder / "empty.mp4")
    if kind == "text":
        (folder / "notes.mp4").write_text("not a video")
        return str(folder / "notes.mp4")
    if kind == "missing":
        return str(folder / "missing.mp4")
    return "rtsp://127.0.0.1:9/none"


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such file"),
        ("empty", "empty"),
        ("text", "not a video"),
        ("closed-port", "127.0.0.1:9"),
    ],
)
def test_bad_sources_get_one_line_errors(tmp_path, kind, message):
    source = _bad_source(kind, tmp_path)
    proc = _run("enhance", "--source", source, "--out", str(tmp_path / "o.mp4"), timeout=60)
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("run.py: ") and message in err[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_enhance_can_drop_audio(tmp_path):
    src, out = tmp_path / "faces.mp4", tmp_path / "silent.mp4"
    _faces_clip(src, frames=4)
    proc = _enhance(src, out, "--audio", "drop", "--engine", "bicubic")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with av.open(str(out)) as c:
        assert not c.streams.audio
        assert sum(1 for _ in c.decode(video=0)) == 4


def test_bad_settings_are_refused_before_anything_starts(tmp_path):
    proc = _run("enhance", "--source", "demo", "--detect-interval", "0", timeout=60)
    assert proc.returncode == 2
    assert "configuration error" in proc.stderr and "interval" in proc.stderr
    proc = _run("enhance", "--source", "demo", "--out", str(tmp_path / "no" / "dir" / "x.mp4"), timeout=60)
    assert proc.returncode == 1 and "output folder does not exist" in proc.stderr
