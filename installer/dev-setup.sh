#!/usr/bin/env bash
# Set up a development checkout: Debian libraries Qt needs, a .venv with every dependency pinned,
# and the project installed in editable mode. Safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

# Qt (PySide6) needs these shared libraries even offscreen.
DEBS=(libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0)
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
