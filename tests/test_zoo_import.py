"""`trytry-reid import` without the peers: the key tables against the peers' own key names and shapes
(tests/zoo_keys.json.gz, written by tests/make_zoo_keys.py from torchreid 0.2.5 and fast-reid 1.4.0), the file
variations, the refusals (nothing written), and an imported checkpoint through calibrate, verify, evaluate,
index + serve, export (ONNX parity), Embedder and fine-tuning."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trytry_reid.engine.checkpoint import file_sha256, load_checkpoint
from trytry_reid.errors import UsageError
from trytry_reid.jobs.cli import main as cli_main
from trytry_reid.jobs.config import load_config, resolve_config
from trytry_reid.jobs.zoo_import import PEERS, run_import
from trytry_reid.models.reid_model import build_reid_model
from trytry_reid.models.zoo_file import ImportOptions, ZooImportError, fit_state_dict
from trytry_reid.serving.inference import load_model

from conftest import REPO
from data_fixtures import make_market_tree
from test_export import write_images
from zoo_peers import FASTREID_CASES, TORCHREID_CASES

KEYS = json.loads(gzip.open(REPO / "tests" / "zoo_keys.json.gz", "rt").read())
SMALL = ImportOptions(height=64, width=32)


def fake_weights(layout: list, seed: int = 0, classes: int | None = None) -> dict[str, torch.Tensor]:
    """Random tensors with a peer's key names and shapes: He-scaled weights, normalisation scales near 1 and
    shifts near 0.1, running statistics 0 / 1 (a network whose features still tell colours apart)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout:
        if classes is not None and key in ("classifier.weight", "classifier.bias", "heads.weight"):
            shape = [classes, *shape[1:]]
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(3)
        elif key.endswith(("running_var", ".p")):
            state[key] = torch.ones(shape) * (3.0 if key.endswith(".p") else 1.0)
        elif key.endswith("running_mean"):
            state[key] = torch.zeros(shape)
        elif len(shape) == 1 and key.endswith("weight"):
            state[key] = torch.rand(shape, generator=generator) * 0.5 + 0.75
        elif len(shape) <= 1:
            state[key] = torch.randn(shape, generator=generator) * 0.05 + 0.1
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
    return state


def save_torchreid_file(path: Path, arch: str = "osnet_x0_25", **kwargs) -> Path:
    state = fake_weights(KEYS["torchreid"][arch], **kwargs)
    torch.save({"state_dict": state, "epoch": 60, "rank1": np.float64(0.9)}, path)
    return path


def save_fastreid_file(path: Path, case: str = "bot_R50-ibn") -> Path:
    torch.save({"model": fake_weights(KEYS["fastreid"][case]), "iteration": 100}, path)
    return path


def fitted(peer: str, state: dict[str, torch.Tensor], options: ImportOptions = SMALL):
    """The plan for ``state`` and its complete state dict for the model it describes, built on the meta device
    (shapes only, no memory, no init): the key table's check without files."""
    plan = PEERS[peer](state, Path("peer-file"), options)
    with torch.device("meta"):
        model = build_reid_model(num_classes=0, **plan.model)
    return plan, fit_state_dict(model, plan.renamed, Path("peer-file"), plan.arch, plan.filled)


@pytest.mark.parametrize("name", [case[0] for case in TORCHREID_CASES])
def test_torchreid_layouts_map_completely_and_the_arch_is_read_from_the_keys(name):
    plan, weights = fitted("torchreid", fake_weights(KEYS["torchreid"][name]))
    assert plan.arch == name and plan.renamed.dropped == ["classifier.weight", "classifier.bias"]
    assert len(weights) == len(KEYS["torchreid"][name]) - 2
    assert plan.model["embedding_bn_relu"] == (name.startswith("osnet") or name == "resnet50_fc512")


@pytest.mark.parametrize("case", FASTREID_CASES, ids=[case[0] for case in FASTREID_CASES])
def test_fastreid_layouts_map_completely_and_the_backbone_is_read_from_the_keys(case):
    case_id, kind, *_, backbone = case
    plan, weights = fitted("fastreid", fake_weights(KEYS["fastreid"][case_id]))
    assert plan.arch == backbone and plan.renamed.dropped == ["heads.weight"]
    assert plan.model["pooling"] == {"bot": "avg", "agw": "gem", "sbs": "gem"}[kind] and plan.model["bnneck"]
    assert any("pooling" in note for note in plan.notes) == (kind != "sbs")  # said when the file cannot tell
    assert len(weights) == len(KEYS["fastreid"][case_id]) - 1 + ("embedding.bias" in weights) + (kind == "agw")


def test_an_imported_file_is_a_trained_runs_checkpoint(tmp_path):
    summary = run_import("torchreid", save_torchreid_file(tmp_path / "m.pth.tar"), tmp_path / "m.pt", SMALL)
    stored = load_checkpoint(tmp_path / "m.pt")
    assert stored["num_classes"] == 0 and stored["imported_from"]["arch"] == "osnet_x0_25"
    assert stored["imported_from"]["sha256"] == file_sha256(tmp_path / "m.pth.tar")
    config = resolve_config(stored["config"], ["data.root=" + str(tmp_path)])      # a full, valid config
    assert (config.data.height, config.data.width, config.data.interpolation) == (64, 32, "bilinear")
    assert config.model.backbone == "osnet_x0_25" and config.model.pretrained == "none"
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.model.output_dim == summary["feature_dim"] == 512
    assert torch.isfinite(loaded.model.embed(torch.randn(2, 3, 64, 32))).all()


def test_a_state_dict_at_the_top_under_keys_or_with_module_prefixes_imports_the_same(tmp_path):
    state = fake_weights(KEYS["torchreid"]["osnet_x0_25"])
    variants = {"top": state, "nested": {"state_dict": state, "epoch": 3},
                "parallel": {"state_dict": {f"module.{k}": v for k, v in state.items()}}}
    results = []
    for name, content in variants.items():
        torch.save(content, tmp_path / f"{name}.pth")
        run_import("torchreid", tmp_path / f"{name}.pth", tmp_path / f"{name}.pt", SMALL)
        results.append(load_checkpoint(tmp_path / f"{name}.pt")["model"])
    assert all(torch.equal(results[0][k], other[k]) for other in results[1:] for k in results[0])


def test_classifier_heads_of_any_size_are_dropped(tmp_path):
    source = save_torchreid_file(tmp_path / "m.pth", classes=751)
    assert run_import("torchreid", source, tmp_path / "m.pt", SMALL)["arch"] == "osnet_x0_25"


def test_an_unmatched_key_is_named_and_nothing_is_written(tmp_path):
    state = fake_weights(KEYS["fastreid"]["bot_R50-ibn"])
    state["b1_head.bottleneck.0.weight"] = torch.ones(3)
    torch.save({"model": state}, tmp_path / "mgn.pth")
    with pytest.raises(ZooImportError, match=r"1 keys of the file have no place in fastreid_r50_ibn: "
                                             r"b1_head\.bottleneck\.0\.weight"):
        run_import("fastreid", tmp_path / "mgn.pth", tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_a_missing_weight_and_a_wrong_arch_are_refused(tmp_path):
    state = fake_weights(KEYS["torchreid"]["osnet_x1_0"])
    del state["conv5.bn.running_mean"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(ZooImportError, match=r"weights of osnet_x1_0 are not in the file: trunk\.conv5\.bn\."
                                             r"running_mean"):
        run_import("torchreid", tmp_path / "cut.pth", tmp_path / "m.pt")
    source = save_torchreid_file(tmp_path / "x1.pth", "osnet_x1_0")
    with pytest.raises(ZooImportError, match=r"shapes differ: 'conv1\.conv\.weight' \(64, 3, 7, 7\) -> "
                                             r"'trunk\.conv1\.conv\.weight' \(16, 3, 7, 7\)"):
        run_import("torchreid", source, tmp_path / "m.pt", ImportOptions(arch="osnet_x0_25"))
    with pytest.raises(ZooImportError, match="not a torchreid architecture .* looks like osnet_x1_0"):
        run_import("torchreid", source, tmp_path / "m.pt", ImportOptions(arch="pcb_p6"))
    assert not (tmp_path / "m.pt").exists()


def test_files_with_code_or_of_the_wrong_kind_are_refused_naming_them(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(ZooImportError, match=r"'.*module\.pth' with torch\.load\(weights_only=True\)"):
        run_import("torchreid", tmp_path / "module.pth", tmp_path / "m.pt")
    torch.save({"epoch": 3, "optimizer": {}}, tmp_path / "empty.pth")
    with pytest.raises(ZooImportError, match="holds no state dict .* its keys: 'epoch', 'optimizer'"):
        run_import("torchreid", tmp_path / "empty.pth", tmp_path / "m.pt")
    with pytest.raises(ZooImportError, match="not a fast-reid ResNet model"):
        run_import("fastreid", save_torchreid_file(tmp_path / "osnet.pth"), tmp_path / "m.pt")


def test_fastreid_pixel_statistics_and_pooling_choices():
    state = fake_weights(KEYS["fastreid"]["sbs_R50"])
    state["pixel_mean"] = torch.tensor([127.5, 127.5, 127.5]).view(1, 3, 1, 1)
    state["pixel_std"] = torch.tensor([51.0, 51.0, 51.0]).view(1, 3, 1, 1)
    plan, weights = fitted("fastreid", state, ImportOptions())
    prep = plan.preprocessing
    assert (prep["height"], prep["width"], prep["interpolation"]) == (384, 128, "bicubic")   # SBS: a learned p
    assert prep["mean"] == [0.5, 0.5, 0.5] and prep["std"] == [0.2, 0.2, 0.2]
    assert weights["pool.p"].shape == () and "pixel_mean" in plan.renamed.dropped
    with pytest.raises(ZooImportError, match="holds a learned GeM p"):
        fitted("fastreid", state, ImportOptions(pooling="avg"))
    bot = fake_weights(KEYS["fastreid"]["bot_R50"])
    plan, _ = fitted("fastreid", bot, ImportOptions(pooling="max"))
    assert plan.model["pooling"] == "max" and not any("pooling" in note for note in plan.notes)
    assert (plan.preprocessing["height"], plan.preprocessing["mean"]) == (256, [0.485, 0.456, 0.406])
    state["pixel_mean"] = torch.tensor([0.485, 0.456, 0.406])        # [0, 1] units: not fast-reid's
    with pytest.raises(ZooImportError, match="0-255 units"):
        fitted("fastreid", state)


def test_the_cli_prints_the_summary_and_refuses_to_overwrite(tmp_path, capsys):
    source = save_torchreid_file(tmp_path / "m.pth")
    args = ["import", "--from", "torchreid", str(source), "--out", str(tmp_path / "m.pt"), "--height", "64",
            "--width", "32"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "imported osnet_x0_25 (backbone osnet_x0_25, 512-d features" in out and "bilinear resize" in out
    assert cli_main(args) == 2 and "exists; choose another path or pass --overwrite" in capsys.readouterr().err
    assert cli_main([*args, "--overwrite"]) == 0
    with pytest.raises(UsageError, match="--height 0"):
        run_import("torchreid", source, tmp_path / "n.pt", ImportOptions(height=0))


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
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        terms, _ = criterion(model(images), labels)
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
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
