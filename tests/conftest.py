"""Shared fixtures: where the optional real data lives, and a small thread budget for torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# TRYTRY_REID_TEST_THREADS=1 keeps the suite to one core while other work shares the machine.
torch.set_num_threads(int(os.environ.get("TRYTRY_REID_TEST_THREADS", max(1, min(2, os.cpu_count() or 1)))))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRYTRY_REID_SHARED", REPO.parent / "shared"))
MARKET_DEVSPLIT = SHARED / "data" / "market1501-devsplit"
VIPER = SHARED / "data" / "viper"
MNIST5K = SHARED / "data" / "mnist5k"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet_features.pth"


def losses_on_one_batch(model, criterion, images, labels, steps: int, lr: float) -> list[float]:
    """The total loss at each of ``steps`` Adam steps on one batch: a model that trains lowers it."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        terms, _ = criterion(model(images), labels)
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def require(path: Path) -> Path:
    """Skip the calling test cleanly when an optional shared file or folder is absent."""
    if not path.exists():
        pytest.skip(f"optional shared data not present: {path}")
    return path


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    """Keep dataset caches (digits/mnist PNGs) out of the user's home during tests; shared per session."""
    monkeypatch.setenv("TRYTRY_REID_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
