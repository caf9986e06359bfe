"""Write tests/zoo_keys.json.gz: the parameter and buffer names and shapes of every model the import supports, as
torchreid 0.2.5 and fast-reid 1.4.0 build them (11 identities). tests/test_zoo_import.py checks the key tables
against it where the peers are not installed.

    TRYTRY_REID_PEERS=/path/to/.bench-peers .venv/bin/python tests/make_zoo_keys.py
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import zoo_peers  # noqa: E402
from zoo_peers import FASTREID_CASES, TORCHREID_CASES  # noqa: E402

OUT = HERE / "zoo_keys.json.gz"


def shapes(model) -> list[list]:
    return [[key, list(value.shape)] for key, value in model.state_dict().items()]


def main() -> None:
    keys = {"torchreid": {}, "fastreid": {}}
    for name, _, _ in TORCHREID_CASES:
        keys["torchreid"][name] = shapes(zoo_peers.torchreid_model(name))
    for case_id, kind, depth, ibn, extra, _, _ in FASTREID_CASES:
        keys["fastreid"][case_id] = shapes(zoo_peers.fastreid_model(zoo_peers.fastreid_cfg(kind, depth, ibn,
                                                                                         extra=extra)))
    with gzip.open(OUT, "wt") as handle:
        json.dump(keys, handle, separators=(",", ":"))
    print(f"wrote {OUT}: {sum(len(v) for peer in keys.values() for v in peer.values())} keys")


if __name__ == "__main__":
    main()
