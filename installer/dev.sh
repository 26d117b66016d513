#!/usr/bin/env bash
# The two commands of the README, each setting itself up on first use:
#   bash installer/dev.sh app [iadgpt-desktop options]   run the station
#   bash installer/dev.sh test [pytest options]          run the tests
# Set-up (installer/dev-setup.sh: Debian libraries Qt needs, .venv with every pinned dependency) runs
# when .venv is missing or pyproject.toml / the set-up script changed since it last ran; otherwise it is
# skipped in a fraction of a second.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

what=${1:-}
[ $# -gt 0 ] && shift
case "$what" in
    app | test) ;;
    *) echo "usage: bash installer/dev.sh app [iadgpt-desktop options] | test [pytest options]" >&2; exit 2 ;;
esac

STAMP=.venv/.iadgpt-setup
want=$(cat pyproject.toml installer/dev-setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "first use: setting up .venv (Debian libraries for Qt, then the pinned Python packages; a few minutes)"
    bash installer/dev-setup.sh
    echo "$want" > "$STAMP"
fi

if [ "$what" = test ]; then
    export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen} HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
    exec .venv/bin/python -m pytest -q "$@"
fi
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
    echo "no display: running offscreen (add --screenshot FILE.png to see what it shows)"
    export QT_QPA_PLATFORM=offscreen
fi
exec .venv/bin/iadgpt-desktop "$@"
