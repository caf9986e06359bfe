#!/usr/bin/env bash
# The main job on the embedded default: set up .venv, then `python main.py` (config/demo_digits.yml).
# Extra arguments go to main.py, e.g.: scripts/demo.sh --config config/resnet_softtrip.yml data.root=/data/market
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/python main.py "$@"
