#!/usr/bin/env bash
# Install the peer toolkits into .bench-peers/, with --no-deps so nothing in .venv changes: torchreid 0.2.5
# (studies/peer_torchreid.py trains it; the import parity tests build its models) and fast-reid 1.4.0 (the
# import parity tests). The study and tests/zoo_peers.py put that folder on sys.path themselves
# (TRYTRY_REID_PEERS=FOLDER points the tests at another one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
stamp=".bench-peers/.installed-$(sha1sum benchmarks/peers-requirements.txt | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "[peers] installing benchmarks/peers-requirements.txt into .bench-peers/ (--no-deps)"
    .venv/bin/python -m pip install --quiet --no-deps --target .bench-peers -r benchmarks/peers-requirements.txt
    touch "$stamp"
fi
