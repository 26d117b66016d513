#!/usr/bin/env bash
# Set up a development checkout: Debian libraries Qt needs, a .venv with every dependency pinned,
# and the project installed in editable mode. Safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

# Qt (PySide6) needs the first line of libraries even offscreen; the xcb ones are what its "xcb"
# platform plugin loads on a real X display (without libxcb-icccm4 or libxcb-keysyms1 it fails with a
# misleading message about xcb-cursor).
DEBS=(libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0
      libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
      libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0
      libxcb-xinerama0 libxcb-xkb1)
echo "[1/4] Debian libraries Qt needs"
missing=()
for pkg in "${DEBS[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

echo "[2/4] Python environment .venv ($PYTHON)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
echo "[3/4] torch and torchvision (the largest download; a minute or more the first time)"
# torch and torchvision must come together in one command (matching builds).
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
echo "[4/4] the project and its pinned dependencies"
.venv/bin/python -m pip install -q -e ".[dev]"
echo "set-up done: .venv is ready"
