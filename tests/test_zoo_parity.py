"""Parity with the peers: each importable architecture built by torchreid 0.2.5 or fast-reid 1.4.0 itself, with
random weights and random BatchNorm statistics, saved in the peer's own file format, imported, and run on real
Market crops through each side's own pipeline (the peer's read_image + test transform + model in eval mode;
ours: load_model + its transform): the retrieval features agree within 1e-5. Skipped where the peers are not
installed (benchmarks/setup_peers.sh); tests/test_zoo_import.py checks the key tables without them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trytry_reid.data.images import read_image
from trytry_reid.jobs.zoo_import import run_import
from trytry_reid.models.zoo_file import ImportOptions
from trytry_reid.serving.inference import load_model

import zoo_peers
from conftest import MARKET_DEVSPLIT, require
from zoo_peers import FASTREID_CASES, FULL, SMALL, TORCHREID_CASES

CROPS = 4


def crops() -> list[Path]:
    """Real Market query crops (128x64 on disk) from distinct identities."""
    query = require(MARKET_DEVSPLIT / "query")
    return sorted(query.glob("*.jpg"))[:CROPS * 40:40]


def our_features(checkpoint: Path, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """(retrieval features, the vector before L2 normalisation) through the path extract/Embedder use."""
    loaded = load_model(checkpoint)
    transform = loaded.transform()
    batch = torch.stack([transform(read_image(str(p))) for p in paths])
    with torch.no_grad():
        output = loaded.model(batch)
        return loaded.model.embed(batch), output.bn_features


def assert_parity(peer: torch.Tensor, checkpoint: Path, paths: list[Path]) -> None:
    embedded, raw = our_features(checkpoint, paths)
    assert raw.shape == peer.shape
    assert torch.isfinite(peer).all() and peer.abs().max() > 1e-3
    assert (F.normalize(peer, dim=1) - embedded).abs().max().item() <= 1e-5
    relative = (peer - raw).norm(dim=1) / peer.norm(dim=1)      # the unnormalised vectors too: same scale
    assert relative.max().item() <= 1e-4




@pytest.mark.parametrize("name,form,size", TORCHREID_CASES, ids=[case[0] for case in TORCHREID_CASES])
def test_torchreid_models_import_with_their_features(name, form, size, tmp_path):
    paths = crops()
    model = zoo_peers.torchreid_model(name)
    zoo_peers.randomize(model, lambda: zoo_peers.torchreid_features(model, paths, *size))
    source = zoo_peers.save_torchreid(model, tmp_path, form)
    options = ImportOptions() if size == FULL else ImportOptions(height=size[0], width=size[1])
    summary = run_import("torchreid", source, tmp_path / "imported.pt", options)
    assert summary["arch"] == name and summary["dropped"] == ["classifier.weight", "classifier.bias"]
    assert (summary["height"], summary["width"], summary["interpolation"]) == (*size, "bilinear")
    assert_parity(zoo_peers.torchreid_features(model, paths, *size), tmp_path / "imported.pt", paths)




@pytest.mark.parametrize("case", FASTREID_CASES, ids=[case[0] for case in FASTREID_CASES])
def test_fastreid_models_import_with_their_features(case, tmp_path):
    _, kind, depth, ibn, extra, size, backbone = case
    paths = crops()
    cfg = zoo_peers.fastreid_cfg(kind, depth, ibn, *size, extra=extra)
    model = zoo_peers.fastreid_model(cfg)
    zoo_peers.randomize(model, lambda: zoo_peers.fastreid_features(model, cfg, paths))
    source = zoo_peers.save_fastreid(model, tmp_path)
    options = ImportOptions() if size == FULL else ImportOptions(height=size[0], width=size[1])
    summary = run_import("fastreid", source, tmp_path / "imported.pt", options)
    assert summary["arch"] == backbone and summary["interpolation"] == "bicubic"
    assert summary["feature_dim"] == extra.get("MODEL.HEADS.EMBEDDING_DIM", 2048)
    stored = torch.load(tmp_path / "imported.pt", weights_only=True)["config"]["model"]
    assert stored["pooling"] == {"bot": "avg", "agw": "gem", "sbs": "gem"}[kind] and stored["last_stride"] == 1
    assert_parity(zoo_peers.fastreid_features(model, cfg, paths), tmp_path / "imported.pt", paths)


def test_fastreid_model_zoo_layout_imports(tmp_path):
    """fast-reid's published zoo files predate 1.x: the BNNeck is ``heads.bnneck.*`` and the state dict carries
    pixel_mean / pixel_std (0-255); under DataParallel the keys start with ``module.``. The same weights in that
    layout import to the same features, with the mean/std read from the file."""
    paths = crops()
    cfg = zoo_peers.fastreid_cfg("bot", "50x", True, *SMALL, extra={"MODEL.PIXEL_MEAN": [120.0, 110.0, 100.0],
                                                                    "MODEL.PIXEL_STD": [60.0, 55.0, 50.0]})
    model = zoo_peers.fastreid_model(cfg)
    zoo_peers.randomize(model, lambda: zoo_peers.fastreid_features(model, cfg, paths))
    old = {}
    for key, value in model.state_dict().items():
        key = key.replace("heads.bottleneck.0.", "heads.bnneck.").replace("heads.weight", "heads.classifier.weight")
        old["module." + key] = value
    old["module.pixel_mean"], old["module.pixel_std"] = model.pixel_mean.clone(), model.pixel_std.clone()
    torch.save({"model": old, "iteration": 1000}, tmp_path / "market_bot_R50-ibn.pth")
    summary = run_import("fastreid", tmp_path / "market_bot_R50-ibn.pth", tmp_path / "imported.pt",
                         ImportOptions(height=SMALL[0], width=SMALL[1]))
    assert summary["mean"] == pytest.approx([120 / 255, 110 / 255, 100 / 255], abs=1e-6)
    assert summary["std"] == pytest.approx([60 / 255, 55 / 255, 50 / 255], abs=1e-6)
    assert sorted(summary["dropped"]) == ["heads.classifier.weight", "pixel_mean", "pixel_std"]
    assert_parity(zoo_peers.fastreid_features(model, cfg, paths), tmp_path / "imported.pt", paths)
