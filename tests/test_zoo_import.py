"""`trytry-reid import` without the peers: the key tables against the peers' own key names and shapes
(tests/zoo_keys.json.gz, written by tests/make_zoo_keys.py from torchreid 0.2.5 and fast-reid 1.4.0), the file
variations, and the refusals (nothing written). tests/test_zoo_workflow.py takes an imported checkpoint through
the commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trytry_reid.engine.checkpoint import file_sha256, load_checkpoint
from trytry_reid.errors import UsageError
from trytry_reid.jobs.cli import main as cli_main
from trytry_reid.jobs.config import resolve_config
from trytry_reid.jobs.zoo_import import PEERS, run_import
from trytry_reid.models.reid_model import build_reid_model
from trytry_reid.models.zoo_file import ImportOptions, ZooImportError, fit_state_dict
from trytry_reid.serving.inference import load_model

from zoo_peers import FASTREID_CASES, KEYS, TORCHREID_CASES, fake_weights, save_torchreid_file

SMALL = ImportOptions(height=64, width=32)


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
