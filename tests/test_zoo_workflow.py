"""An imported checkpoint (a torchreid osnet_x0_25 file with the peer's key layout and random weights) works where
a trained one does: calibrate, verify, evaluate, index + serve, ONNX export (parity) and Embedder, fine-tuning as
model.pretrained; a bicubic (fast-reid) model resizes bicubically everywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trytry_reid.engine.checkpoint import load_checkpoint
from trytry_reid.jobs.cli import main as cli_main
from trytry_reid.jobs.config import load_config
from trytry_reid.jobs.zoo_import import run_import
from trytry_reid.models.zoo_file import ImportOptions
from trytry_reid.serving.inference import load_model

from conftest import losses_on_one_batch
from data_fixtures import make_market_tree
from test_export import write_images
from zoo_peers import save_torchreid_file

SMALL = ImportOptions(height=64, width=32)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """An imported torchreid osnet_x0_25 (random weights, 64x32) and a miniature Market tree."""
    root = tmp_path_factory.mktemp("imported")
    checkpoint = root / "osnet.pt"
    run_import("torchreid", save_torchreid_file(root / "osnet.pth.tar"), checkpoint, SMALL)
    return checkpoint, make_market_tree(root / "market"), root


def test_an_imported_checkpoint_calibrates_verifies_and_evaluates(imported, tmp_path, capsys):
    checkpoint, market, _ = imported
    local = tmp_path / "osnet.pt"
    local.write_bytes(checkpoint.read_bytes())
    assert cli_main(["calibrate", "--checkpoint", str(local), "--out", str(tmp_path / "cal"), f"data.root={market}",
                     "data.workers=0", "test.calibration_fpr=0.25", "--open-set-drop", "0"]) == 0
    entry = load_checkpoint(local)["calibration"]
    assert entry["auc"] > 0.5 and entry["dataset"] == "market1501"
    a, b = sorted((market / "query").glob("*.jpg"))[:2]
    capsys.readouterr()
    assert cli_main(["verify", "--checkpoint", str(local), str(a), str(b), "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["threshold"] == entry["threshold"] and decision["threshold_source"] == "calibrated"
    assert decision["same"] == (decision["distance"] <= entry["threshold"])
    assert cli_main(["evaluate", "--checkpoint", str(local), "--out", str(tmp_path / "eval"),
                     f"data.root={market}", "data.workers=0"]) == 0
    assert "market1501" in json.loads((tmp_path / "eval" / "metrics.json").read_text())["datasets"]


def test_an_imported_checkpoint_exports_to_onnx_and_embeds_alike(imported, tmp_path):
    from trytry_reid.serving.embedder import Embedder
    from trytry_reid.serving.export import read_preprocessing

    checkpoint, _, _ = imported
    images = write_images(tmp_path / "crops", 8, seed=2, size=(60, 130))
    assert cli_main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"),
                     "--check-images", str(tmp_path / "crops")]) == 0           # parity <= 1e-4 checked inside
    assert read_preprocessing(tmp_path / "m.onnx")["interpolation"] == "bilinear"
    torch_features = Embedder.from_checkpoint(checkpoint).embed(images)
    onnx_features = Embedder.from_onnx(tmp_path / "m.onnx").embed(images)
    assert np.abs(torch_features - onnx_features).max() <= 1e-4


def test_an_imported_checkpoint_indexes_and_serves(imported, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from trytry_reid.serving.app import create_app

    checkpoint, market, _ = imported
    gallery = market / "bounding_box_test"
    assert cli_main(["index", "--checkpoint", str(checkpoint), "--images", str(gallery), "--out",
                     str(tmp_path / "idx"), "--workers", "0"]) == 0
    client = TestClient(create_app(tmp_path / "idx", load_model(checkpoint)))
    query = sorted(gallery.glob("*.jpg"))[0]
    response = client.post("/api/search", files={"image": (query.name, query.read_bytes(), "image/jpeg")})
    assert response.status_code == 200
    assert response.json()["results"][0]["distance"] == pytest.approx(0.0, abs=1e-5)


def test_a_bicubic_model_resizes_bicubically_everywhere(imported, tmp_path):
    """fast-reid's models record data.interpolation: bicubic (above); the test transform, ONNX metadata and
    both Embedder back-ends honour it."""
    from trytry_reid.serving.embedder import Embedder
    from trytry_reid.serving.export import export_onnx, read_preprocessing

    state = load_checkpoint(imported[0])
    state["config"]["data"]["interpolation"] = "bicubic"
    torch.save(state, tmp_path / "bicubic.pt")
    loaded = load_model(tmp_path / "bicubic.pt")
    assert loaded.interpolation == "bicubic" and loaded.transform().transforms[0].interpolation.value == "bicubic"
    export_onnx(loaded, tmp_path / "m.onnx")
    meta = read_preprocessing(tmp_path / "m.onnx")
    assert meta["interpolation"] == "bicubic" and meta["resize"].startswith("bicubic")
    for embedder in (Embedder.from_checkpoint(tmp_path / "bicubic.pt"), Embedder.from_onnx(tmp_path / "m.onnx")):
        assert embedder.transform.transforms[0].interpolation.value == "bicubic"
    image = write_images(tmp_path / "crops", 1, size=(60, 130))[0]
    bilinear = Embedder.from_checkpoint(imported[0]).embed(image)
    assert np.abs(Embedder.from_checkpoint(tmp_path / "bicubic.pt").embed(image) - bilinear).max() > 1e-4


def test_an_imported_checkpoint_fine_tunes_in_our_loop(imported, tmp_path):
    """The imported checkpoint as model.pretrained for training on new data: the trunk starts from its weights,
    the input settings follow it (a fast-reid import's bicubic resize too), and a few steps on one batch lower
    CE + triplet (the architecture trains: pooling, the fc embedding, the losses)."""
    from trytry_reid.data.datasets import build_dataset
    from trytry_reid.jobs import builders

    checkpoint, market, _ = imported
    stored = load_checkpoint(checkpoint)
    stored["config"]["data"].update(interpolation="bicubic", mean=[0.5, 0.5, 0.5])
    torch.save(stored, tmp_path / "bicubic.pt")
    config = load_config(None, ["data.name=market1501", f"data.root={market}", "model.backbone=osnet_x0_25",
                                f"model.pretrained={tmp_path / 'bicubic.pt'}", "model.embedding_dim=512",
                                "model.embedding_bn_relu=true", "model.bnneck=false", "data.height=64",
                                "data.width=32", "data.batch_p=2", "data.batch_k=2", "data.workers=0"])
    assert config.data.interpolation == "bicubic" and config.data.mean == [0.5, 0.5, 0.5]
    train = builders.build_train_data(config, build_dataset("market1501", str(market)))
    images, labels = next(iter(train.loaders(0, 0)))[:2]
    torch.manual_seed(0)
    model = builders.build_model(config, train.num_classes)
    assert torch.equal(model.trunk.conv1.conv.weight, stored["model"]["trunk.conv1.conv.weight"])
    criterion = builders.build_criterion(config, train.num_classes, model.output_dim)
    losses = losses_on_one_batch(model, criterion, images, labels, steps=5, lr=1e-3)
    assert losses[-1] < losses[0], losses


def test_instance_normalised_imports_export_to_onnx_within_tolerance(tmp_path):
    """OSNet-AIN and IBN trunks hold InstanceNorms (always normalising by the input's own statistics): the
    exported graph keeps that, within the export check's 1e-4."""
    from trytry_reid.serving.export import check_onnx, export_onnx

    checkpoint = tmp_path / "ain.pt"
    run_import("torchreid", save_torchreid_file(tmp_path / "ain.pth", "osnet_ain_x0_25"), checkpoint, SMALL)
    loaded = load_model(checkpoint)
    images = write_images(tmp_path / "crops", 6, seed=5, size=(60, 130))
    report = check_onnx(export_onnx(loaded, tmp_path / "ain.onnx"), loaded, images)
    assert report["max_abs_diff"] <= 1e-4
