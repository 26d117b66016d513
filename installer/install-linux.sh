#!/usr/bin/env bash
# Install IAD-GPT Desktop for the current user on a Linux workstation, from the checkout this script
# lives in (a regular, non-editable `pip install .`). Safe to run again (it upgrades in place).
#
#   bash installer/install-linux.sh [--prefix DIR] [--bin-dir DIR] [--data-dir DIR] [--python PY]
#                                   [--wheels DIR] [--torch-index URL] [--no-desktop] [--no-doctor]
#   bash installer/install-linux.sh --uninstall [--prefix DIR] [--bin-dir DIR]
#
# See installer/README.md.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
XDG_DATA_HOME=${XDG_DATA_HOME:-$HOME/.local/share}
PREFIX=$XDG_DATA_HOME/iadgpt-desktop
BIN_DIR=$HOME/.local/bin
DATA_DIR=""
PYTHON=${PYTHON:-}
WHEELS=""
TORCH_INDEX=""
DESKTOP=1
DOCTOR=1
UNINSTALL=0
APP_ID=iadgpt-desktop

usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "install-linux: $*" >&2; exit 1; }

while (($#)); do
    case $1 in
        --prefix) PREFIX=$2; shift 2 ;;
        --bin-dir) BIN_DIR=$2; shift 2 ;;
        --data-dir) DATA_DIR=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --torch-index) TORCH_INDEX=$2; shift 2 ;;
        --no-desktop) DESKTOP=0; shift ;;
        --no-doctor) DOCTOR=0; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done
abspath() { mkdir -p "$1" && (cd "$1" && pwd); }

APP_DIR=$PREFIX/app  # everything the installer owns inside the prefix; the data folder is never touched
MANIFEST=$PREFIX/install-manifest.txt
DESKTOP_FILE=$XDG_DATA_HOME/applications/$APP_ID.desktop
ICON_PNG=$XDG_DATA_HOME/icons/hicolor/256x256/apps/$APP_ID.png
ICON_SVG=$XDG_DATA_HOME/icons/hicolor/scalable/apps/$APP_ID.svg

if ((UNINSTALL)); then
    files=()
    if [ -f "$MANIFEST" ]; then
        mapfile -t files < "$MANIFEST"
    else
        files=("$BIN_DIR/iadgpt-desktop" "$BIN_DIR/iadgpt" "$DESKTOP_FILE" "$ICON_PNG" "$ICON_SVG")
    fi
    for f in "${files[@]}"; do
        [ -n "$f" ] || continue
        if [ -e "$f" ] || [ -L "$f" ]; then rm -f -- "$f" && echo "removed $f"; fi
    done
    if [ -d "$APP_DIR" ]; then rm -rf -- "$APP_DIR" && echo "removed $APP_DIR"; fi
    rm -f -- "$MANIFEST"
    rmdir -- "$PREFIX" 2>/dev/null && echo "removed $PREFIX" || true
    command -v update-desktop-database >/dev/null && update-desktop-database -q "$XDG_DATA_HOME/applications" 2>/dev/null || true
    echo "IAD-GPT Desktop uninstalled. Inspection history, images and settings were kept" \
         "(data folder, ~/.config/iadgpt-desktop); delete them by hand if you want them gone."
    exit 0
fi

# --- Python 3.11 -------------------------------------------------------------------------------
if [ -z "$PYTHON" ]; then
    PYTHON=python3.11
    command -v "$PYTHON" >/dev/null || PYTHON=python3
fi
command -v "$PYTHON" >/dev/null || die "no $PYTHON found; install Python 3.11 (Debian/Ubuntu: sudo apt-get install python3.11 python3.11-venv)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); IAD-GPT needs 3.11 (give --python /path/to/python3.11)"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
    || die "$PYTHON lacks venv/ensurepip; install it (Debian/Ubuntu: sudo apt-get install python3.11-venv)"

# --- Debian libraries Qt needs (the same list as installer/dev-setup.sh) ------------------------
DEBS=(libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0)
if command -v dpkg >/dev/null; then
    missing=()
    for pkg in "${DEBS[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
        fi
        if [ "$SUDO" = none ]; then
            echo "NOTE: Qt needs these Debian packages, which are missing; ask an administrator to run:"
            echo "    sudo apt-get install -y ${missing[*]}"
        else
            echo "installing Debian packages: ${missing[*]}"
            $SUDO apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
        fi
    fi
else
    echo "NOTE: not a Debian-based system; make sure the libraries for Qt 6 (EGL, GL, xkbcommon, fontconfig, dbus, glib) are installed"
fi

# --- virtual environment, torch, the project --------------------------------------------------
mkdir -p "$PREFIX"
PREFIX=$(abspath "$PREFIX")
APP_DIR=$PREFIX/app
MANIFEST=$PREFIX/install-manifest.txt
VENV=$APP_DIR/venv
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
PIP_SOURCE=()
if [ -n "$WHEELS" ]; then  # offline: every wheel comes from this folder
    PIP_SOURCE=(--no-index --find-links "$(abspath "$WHEELS")")
else
    "${PIP[@]}" install -q --upgrade pip
fi

# torch and torchvision must come together in one command (matching builds); pins from pyproject.toml.
TORCH_PIN=$(grep -oE '"torch==[^"]+"' "$SRC/pyproject.toml" | tr -d '"' || true)
TV_PIN=$(grep -oE '"torchvision==[^"]+"' "$SRC/pyproject.toml" | tr -d '"' || true)
TORCH_PIN=${TORCH_PIN:-torch==2.14.1}
TV_PIN=${TV_PIN:-torchvision==0.29.1}
TORCH_ARGS=()
[ -n "$TORCH_INDEX" ] && TORCH_ARGS=(--index-url "$TORCH_INDEX")
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found ($(nvidia-smi -L | head -n 1)): installing the CUDA build $TORCH_PIN $TV_PIN"
else
    # The pinned Linux wheels on PyPI are CUDA builds that also run on the CPU, so the same pins serve
    # machines without a GPU. Give --torch-index https://download.pytorch.org/whl/cpu for the smaller
    # CPU-only build where that index is reachable.
    echo "no working nvidia-smi: installing $TORCH_PIN $TV_PIN for the CPU${TORCH_INDEX:+ from $TORCH_INDEX}"
fi
"${PIP[@]}" install -q "${PIP_SOURCE[@]}" "${TORCH_ARGS[@]}" "$TORCH_PIN" "$TV_PIN"

echo "installing IAD-GPT Desktop from $SRC into $VENV"
BUILD_TMP=$(mktemp -d)
trap 'rm -rf "$BUILD_TMP"' EXIT
# Build from a clean copy, so the checkout gets no build/ or *.egg-info folders.
tar -C "$SRC" --exclude=.venv --exclude=.git --exclude=build --exclude=dist --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=iadgpt-results -cf - . | tar -C "$BUILD_TMP" -xf -
"${PIP[@]}" install -q "${PIP_SOURCE[@]}" --upgrade "$BUILD_TMP"

# --- launchers, desktop entry, icon, data folder ---------------------------------------------
installed=()
mkdir -p "$BIN_DIR"
BIN_DIR=$(abspath "$BIN_DIR")
ENV_LINE=""
if [ -n "$DATA_DIR" ]; then
    DATA_DIR=$(abspath "$DATA_DIR")
    ENV_LINE="export IADGPT_DESKTOP_DATA=\${IADGPT_DESKTOP_DATA:-$(printf '%q' "$DATA_DIR")}"
else
    DATA_DIR=${IADGPT_DESKTOP_DATA:-$XDG_DATA_HOME/iadgpt-desktop}
fi
for tool in iadgpt-desktop iadgpt; do
    cat > "$BIN_DIR/$tool" <<EOF
#!/bin/sh
# IAD-GPT Desktop launcher written by installer/install-linux.sh
$ENV_LINE
exec $(printf '%q' "$VENV/bin/$tool") "\$@"
EOF
    chmod 755 "$BIN_DIR/$tool"
    installed+=("$BIN_DIR/$tool")
done

if ((DESKTOP)); then
    mkdir -p "$(dirname "$ICON_PNG")" "$(dirname "$ICON_SVG")" "$(dirname "$DESKTOP_FILE")"
    install -m 644 "$SRC/resources/icons/$APP_ID.png" "$ICON_PNG"
    install -m 644 "$SRC/resources/icons/$APP_ID.svg" "$ICON_SVG"
    cat > "$DESKTOP_FILE" <<EOF
[Desktop Entry]
Type=Application
Version=1.0
Name=IAD-GPT Desktop
GenericName=Visual inspection station
Comment=Industrial visual anomaly detection with the IAD-GPT model
Exec=$BIN_DIR/iadgpt-desktop
Icon=$ICON_PNG
Terminal=false
Categories=Graphics;Science;Engineering;
StartupWMClass=iadgpt-desktop
EOF
    chmod 644 "$DESKTOP_FILE"
    installed+=("$DESKTOP_FILE" "$ICON_PNG" "$ICON_SVG")
    command -v update-desktop-database >/dev/null && update-desktop-database -q "$(dirname "$DESKTOP_FILE")" 2>/dev/null || true
fi

mkdir -p "$DATA_DIR"
printf '%s\n' "${installed[@]}" > "$MANIFEST"

echo
echo "IAD-GPT Desktop is installed:"
echo "  program:        $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
echo "  launchers:      $BIN_DIR/iadgpt-desktop, $BIN_DIR/iadgpt"
((DESKTOP)) && echo "  desktop entry:  $DESKTOP_FILE (icon $ICON_PNG)"
echo "  data folder:    $DATA_DIR"
echo "  uninstall:      bash $SRC/installer/install-linux.sh --uninstall --prefix $PREFIX --bin-dir $BIN_DIR"
case ":$PATH:" in *":$BIN_DIR:"*) ;; *) echo "  NOTE: $BIN_DIR is not on PATH; add it (e.g. in ~/.profile) or start $BIN_DIR/iadgpt-desktop" ;; esac
if ((DOCTOR)); then
    echo
    echo "checking the installation (iadgpt doctor --quick):"
    "$BIN_DIR/iadgpt" doctor --quick | sed -n '/^== Summary/,$p' || echo "  doctor reports missing parts; run '$BIN_DIR/iadgpt doctor' for details"
fi
