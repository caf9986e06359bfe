"""The training pipeline on Market-layout folders: data checks, bad-image policies, resume, real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trytry_reid.data.datasets import build_dataset
from trytry_reid.engine.checkpoint import load_checkpoint
from trytry_reid.jobs import builders
from trytry_reid.jobs.cli import main as cli_main
from trytry_reid.jobs.config import load_config

from conftest import MARKET_DEVSPLIT, MOBILENET_WEIGHTS, VIPER, losses_on_one_batch, require
from data_fixtures import corrupt_name, make_market_tree

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.backbone=small_cnn", "model.pretrained=none", "data.height=32", "data.width=16",
        "data.batch_p=2", "data.batch_k=2", "data.workers=0", "train.epochs=1", "train.eval_every=1",
        "train.warmup_epochs=0", "train.milestones=[]", "test.figures=false", "train.log_every=1",
        "test.ranking_queries=0"]


def tiny_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(REPO / "config" / "bot_r50.yml"), *TINY, f"data.root={root}",
            f"output_dir={out}", *extra]


def test_check_data_reports_every_bad_file(tmp_path, capsys):
    root = make_market_tree(tmp_path / "market", corrupt=True, truncated=True)
    assert cli_main(tiny_args(root, tmp_path / "run") + ["--check-data"]) == 1
    out = capsys.readouterr().out
    assert corrupt_name() in out and "0004_c2s1_900001_01.jpg" in out
    assert "2 bad" in out


def test_check_data_reports_names_images_and_test_sets_together_each_once(tmp_path, capsys):
    from data_fixtures import make_viper_tree, truncated_name

    root = make_market_tree(tmp_path / "market", bad_name=True, corrupt=True, truncated=True)
    viper = make_viper_tree(tmp_path / "viper")
    (viper / "cam_a" / "oops.bmp").write_bytes((viper / "cam_a" / "000_45.bmp").read_bytes())
    (viper / "cam_b" / "bad_name.bmp").write_bytes((viper / "cam_b" / "000_90.bmp").read_bytes())
    (viper / "cam_b" / "001_90.bmp").write_bytes(b"garbage")
    tests = f"test.datasets=[{{name: viper, root: {viper}}}]"
    assert cli_main(tiny_args(root, tmp_path / "run", tests) + ["--check-data"]) == 1
    out = capsys.readouterr().out
    for name in ("not_a_market_name.jpg", corrupt_name(), truncated_name(), "oops.bmp", "bad_name.bmp",
                 "001_90.bmp"):
        assert sum(name in line for line in out.splitlines()) == 1, (name, out)
    assert not (tmp_path / "run").exists()


def test_check_data_checks_the_training_set_once(tmp_path, capsys):
    root = make_market_tree(tmp_path / "market", corrupt=True)
    assert cli_main(tiny_args(root, tmp_path / "run") + ["--check-data"]) == 1
    out = capsys.readouterr().out
    assert sum(corrupt_name() in line for line in out.splitlines()) == 1 and out.count("images checked") == 1


def test_bad_images_fail_fast_or_are_skipped(tmp_path, capsys):
    root = make_market_tree(tmp_path / "market", corrupt=True)
    assert cli_main(tiny_args(root, tmp_path / "run1")) == 2
    assert corrupt_name() in capsys.readouterr().err
    assert not (tmp_path / "run1" / "checkpoints" / "last.pt").exists()
    assert cli_main(tiny_args(root, tmp_path / "run2", "data.on_bad_image=skip")) == 0
    assert (tmp_path / "run2" / "checkpoints" / "last.pt").is_file()


def test_resume_continues_the_run(tmp_path):
    """`train --resume` picks up <output_dir>/checkpoints/last.pt and trains only the missing epochs."""
    root = make_market_tree(tmp_path / "market")
    out = tmp_path / "run"
    assert cli_main(tiny_args(root, out)) == 0
    first = load_checkpoint(out / "checkpoints" / "last.pt")
    assert first["epoch"] == 1
    assert cli_main(tiny_args(root, out, "train.epochs=2", "--resume")) == 0
    second = load_checkpoint(out / "checkpoints" / "last.pt")
    assert second["epoch"] == 2 and second["step"] > first["step"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epoch"] == 2 and "market1501" in metrics["datasets"]


def test_checkpoints_between_evaluations_carry_the_last_operating_point_across_a_resume(tmp_path):
    """The epoch-1 evaluation's threshold goes into every checkpoint written after it, also by the resumed run
    (which evaluates again only at epoch 3); epoch 3's evaluation replaces it."""
    root = make_market_tree(tmp_path / "market")
    out = tmp_path / "run"
    assert cli_main(tiny_args(root, out)) == 0
    first = load_checkpoint(out / "checkpoints" / "last.pt")["calibration"]
    assert first["epoch"] == 1 and first["dataset"] == "market1501" and first["metric"] == "cosine"
    assert cli_main(tiny_args(root, out, "train.epochs=3", "train.eval_every=3", "--resume")) == 0
    assert load_checkpoint(out / "checkpoints" / "epoch_0002.pt")["calibration"] == first
    assert load_checkpoint(out / "checkpoints" / "last.pt")["calibration"]["epoch"] == 3


def test_evaluate_features_file(tmp_path, capsys):
    """`evaluate --features` ranks features saved by any model; a perfect embedding scores 1.0."""
    q_pids, g_pids = np.array([1, 2, 3]), np.array([1, 1, 2, 3, 4])
    onehot = np.eye(5, dtype=np.float32)
    np.savez(tmp_path / "f.npz", query_features=onehot[q_pids], gallery_features=onehot[g_pids],
             query_pids=q_pids, gallery_pids=g_pids, query_camids=np.zeros(3, int), gallery_camids=np.ones(5, int))
    assert cli_main(["evaluate", "--features", str(tmp_path / "f.npz"), "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())["datasets"]["f"]
    assert metrics["rank1"] == 1.0 and metrics["mAP"] == 1.0
    assert metrics["auc"] == 1.0 and metrics["eer"] == 0.0 and metrics["tpr@fpr=1e-3"] == 1.0  # verification too


def test_devsplit_steps_lower_the_loss_on_a_fixed_batch():
    """Real Market images, ImageNet MobileNetV2 from the shared file: a few steps on one P x K batch
    lower CE + triplet (the model, losses, optimizer and data path learn)."""
    root, weights = require(MARKET_DEVSPLIT), require(MOBILENET_WEIGHTS)
    config = load_config(REPO / "config" / "mobilenet_market_cpu.yml",
                         [f"data.root={root}", f"model.pretrained={weights}", "data.height=64", "data.width=32",
                          "data.batch_p=4", "data.batch_k=4", "data.workers=0", "test.datasets=[]"])
    train = builders.build_train_data(config, build_dataset("market1501", str(root)))
    images, labels = next(iter(train.loaders(0, 0)))[:2]
    model = builders.build_model(config, train.num_classes)
    criterion = builders.build_criterion(config, train.num_classes, model.output_dim)
    losses = losses_on_one_batch(model, criterion, images, labels, steps=6, lr=3.5e-4)
    assert losses[-1] < losses[0], losses


def matchable_queries(root: Path) -> int:
    """Queries with at least one gallery image of their identity from another camera (brute force)."""
    splits = build_dataset("market1501", str(root))
    seen = {(r.pid, r.camid) for r in splits.gallery}
    cameras = {cam for _, cam in seen}
    return sum(any((q.pid, c) in seen for c in cameras if c != q.camid) for q in splits.query)


def test_devsplit_train_then_evaluate_within_and_across_domains(tmp_path, capsys):
    """Train a few steps on the devsplit, then `evaluate` on the devsplit and VIPeR in one table (a small
    CNN keeps the 5,558 test images quick)."""
    root, viper = require(MARKET_DEVSPLIT), require(VIPER)
    tests = f"test.datasets=[{{name: market1501, root: {root}, label: market1501-devsplit}}, " \
            f"{{name: viper, root: {viper}}}]"
    args = ["--config", str(REPO / "config" / "mobilenet_market_cpu.yml"), f"data.root={root}",
            "model.backbone=small_cnn", "model.pretrained=none", "data.height=32", "data.width=16",
            "data.workers=0", tests]
    out = tmp_path / "run"
    assert cli_main(["train", *args, "train.epochs=1", "train.average_epochs=1", "train.steps_per_epoch=2",
                     "train.eval_every=1", "test.figures=false", "test.ranking_queries=0", f"output_dir={out}",
                     f"test.datasets=[{{name: viper, root: {viper}}}]"]) == 0
    capsys.readouterr()
    assert cli_main(["evaluate", *args, "--checkpoint", str(out / "checkpoints" / "last.pt"),
                     "--out", str(tmp_path / "eval")]) == 0
    table = capsys.readouterr().out
    assert "market1501-devsplit" in table and "viper" in table
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["datasets"]
    assert metrics["market1501-devsplit"]["num_valid_queries"] == matchable_queries(root)
    assert metrics["viper"]["num_valid_queries"] == 632
    for values in metrics.values():
        assert all(0.0 <= values[k] <= 1.0 for k in ("rank1", "rank5", "rank10", "mAP", "mINP"))
    trained = json.loads((out / "metrics.json").read_text())["datasets"]
    # the same weights in another process: kernel rounding can swap near-tied gallery images of a 2-step model
    assert trained["viper"]["mAP"] == pytest.approx(metrics["viper"]["mAP"], abs=1e-4)
