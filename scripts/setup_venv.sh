#!/usr/bin/env bash
# Create .venv (python3 -m venv) and install trytry-reid into it with the given extras, once per change of
# pyproject.toml. Usage: scripts/setup_venv.sh [extras]   e.g. scripts/setup_venv.sh test,search,export,serve
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($python --version)"
    "$python" -m venv .venv
fi
stamp=".venv/.trytry-reid-installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
    echo "[setup] installing trytry-reid${extras:+[$extras]} and its dependencies (a few minutes the first time)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    spec="."; [ -n "$extras" ] && spec=".[$extras]"
    .venv/bin/python -m pip install --quiet -e "$spec"
    touch "$stamp"
fi
