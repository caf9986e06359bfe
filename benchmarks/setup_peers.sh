#!/usr/bin/env bash
# Install the peer toolkits that benchmarks/peer_torchreid.py trains (torchreid 0.2.5) into .bench-peers/,
# with --no-deps so nothing in .venv changes; the benchmark puts that folder on sys.path itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
stamp=".bench-peers/.installed-$(sha1sum benchmarks/peers-requirements.txt | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "[peers] installing benchmarks/peers-requirements.txt into .bench-peers/ (--no-deps)"
    .venv/bin/python -m pip install --quiet --no-deps --target .bench-peers -r benchmarks/peers-requirements.txt
    touch "$stamp"
fi
