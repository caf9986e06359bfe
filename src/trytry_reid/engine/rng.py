"""Random state that can be saved in a ``weights_only`` checkpoint and restored exactly.

The main process's generators (python ``random``, numpy's global state, torch CPU and CUDA), used by dropout,
random selectors, etc.: :func:`capture_rng_state` / :func:`restore_rng_state` save them as tensors, ints and
floats. Data augmentation draws from per-sample seeds instead (engine/epoch_loaders.py).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

MASK64 = (1 << 63) - 1


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. ``(seed, epoch, batch, position)``)."""
    entropy = np.random.SeedSequence([int(p) & MASK64 for p in parts])
    return int(entropy.generate_state(1, dtype=np.uint64)[0]) & MASK64


def capture_rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and numbers (loads with ``torch.load(weights_only=True)``)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`; raises ValueError naming the missing key."""
    for key in ("python", "numpy", "torch"):
        if key not in state:
            raise ValueError(f"rng state lacks '{key}' (has {sorted(state)}); was it saved by capture_rng_state?")
    py = state["python"]
    random.setstate((py["version"], tuple(int(w) for w in py["words"].tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
