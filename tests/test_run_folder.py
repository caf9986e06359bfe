"""A run folder is never lost: no silent overwrite, safe resume, every check before the first write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_pipeline_market import tiny_args

from trytry_reid.engine.checkpoint import load_checkpoint
from trytry_reid.jobs.cli import main as cli_main

from data_fixtures import make_market_tree


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (ns)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny market tree and a finished one-epoch run on it (copy it before changing it)."""
    base = tmp_path_factory.mktemp("runs")
    root = make_market_tree(base / "market")
    assert cli_main(tiny_args(root, base / "run")) == 0
    return root, base / "run"


@pytest.fixture
def run(finished, tmp_path) -> tuple[Path, Path]:
    root, original = finished
    shutil.copytree(original, tmp_path / "run")
    return root, tmp_path / "run"


def test_training_into_a_run_folder_is_refused_and_changes_nothing(run, capsys):
    root, out = run
    before = snapshot(out)
    assert cli_main(tiny_args(root, out)) == 2
    err = capsys.readouterr().err
    assert f"output folder {out} already holds a run" in err and "nothing was changed" in err
    assert "--resume" in err and "output_dir=" in err and "--overwrite" in err
    assert snapshot(out) == before


def test_overwrite_replaces_only_the_run(run):
    root, out = run
    (out / "notes.txt").write_text("mine")
    old_last = (out / "checkpoints" / "last.pt").stat().st_mtime_ns
    (out / "checkpoints" / "epoch_0099.pt").write_bytes(b"an old epoch")
    assert cli_main(tiny_args(root, out, "--overwrite")) == 0
    assert (out / "notes.txt").read_text() == "mine"                     # not a run file: kept
    assert not (out / "checkpoints" / "epoch_0099.pt").exists()          # the old run's files are gone
    assert (out / "checkpoints" / "last.pt").stat().st_mtime_ns != old_last
    assert len(list((out / "tb").iterdir())) == 1                        # one TensorBoard file, not two


def test_overwrite_deletes_nothing_when_training_cannot_start(run, capsys):
    root, out = run
    before = snapshot(out)
    assert cli_main(tiny_args(root, out, "data.batch_p=9", "--overwrite")) == 2
    assert "'data.batch_p' = 9: the training set of 'market1501' has only 4 identities" in capsys.readouterr().err
    assert snapshot(out) == before


def test_resume_and_overwrite_together_are_refused(run, capsys):
    root, out = run
    assert cli_main(tiny_args(root, out, "--resume", "--overwrite")) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "checkpoints" / "last.pt").is_file()


def test_resuming_a_finished_run_rewrites_nothing(run, capsys):
    root, out = run
    before = snapshot(out)
    assert cli_main(tiny_args(root, out, "--resume")) == 0
    printed = capsys.readouterr().out
    assert "this run already finished 1 epoch" in printed and "train.epochs" in printed
    assert snapshot(out) == before


def test_resuming_a_finished_run_with_more_epochs_continues_and_evaluates(run):
    root, out = run
    first = load_checkpoint(out / "checkpoints" / "last.pt")
    # no log point falls in the resumed epoch: summary.json still counts its steps
    assert cli_main(tiny_args(root, out, "train.epochs=2", "train.log_every=1000", "--resume")) == 0
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert (last["epoch"], last["step"]) == (2, 2 * first["step"])
    assert [e["epoch"] for e in last["history"]["data"]["eval"]] == [1, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epoch"] == 2 and set(metrics["datasets"]["market1501"]) >= {"rank1", "mAP"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["market1501"]["mAP"] == metrics["datasets"]["market1501"]["mAP"]
    assert summary["steps"] == last["step"] > 0    # every step taken, whether or not a log point fell on it


def test_asking_for_fewer_epochs_than_done_is_refused(run, capsys):
    root, out = run
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    state["epoch"] = 3
    torch.save(state, out / "checkpoints" / "last.pt")
    before = snapshot(out)
    assert cli_main(tiny_args(root, out, "--resume")) == 2
    assert "already trained 3 epochs, more than train.epochs=1" in capsys.readouterr().err
    assert snapshot(out) == before


def test_a_corrupt_checkpoint_fails_the_resume_before_any_write(run, capsys):
    root, out = run
    last = out / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    before = snapshot(out)
    assert cli_main(tiny_args(root, out, "train.epochs=2", "--resume")) == 2
    assert f"checkpoint {last} is truncated or corrupt" in capsys.readouterr().err
    assert snapshot(out) == before


def test_a_config_that_does_not_fit_the_checkpoint_is_named_before_any_write(run, capsys):
    root, out = run
    before = snapshot(out)
    assert cli_main(tiny_args(root, out, "train.epochs=2", "model.embedding_dim=16", "loss.triplet.margin=0.5",
                              "--resume")) == 2
    err = capsys.readouterr().err
    assert "model.embedding_dim: 0 in the checkpoint, 16 now" in err
    assert "loss.triplet.margin: 0.3 in the checkpoint, 0.5 now" in err
    assert snapshot(out) == before


def test_a_saved_state_that_does_not_fit_the_optimizer_fails_before_any_write(run, capsys):
    root, out = run
    last = out / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    state["optimizer"]["param_groups"].append(dict(state["optimizer"]["param_groups"][0], params=[]))
    torch.save(state, last)
    before = snapshot(out)
    assert cli_main(tiny_args(root, out, "train.epochs=2", "--resume")) == 2
    err = capsys.readouterr().err
    assert f"cannot resume {last}: its saved state does not fit" in err and "nothing was changed" in err
    assert snapshot(out) == before


def test_batch_larger_than_the_identities_writes_nothing(tmp_path, capsys):
    root = make_market_tree(tmp_path / "market")
    assert cli_main(tiny_args(root, tmp_path / "run", "data.batch_p=9")) == 2
    assert "'data.batch_p' = 9: the training set of 'market1501' has only 4 identities" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_evaluate_without_config_uses_the_checkpoints_own_config(finished, tmp_path, capsys):
    from data_fixtures import make_viper_tree

    root, out = finished
    checkpoint = str(out / "checkpoints" / "last.pt")
    assert cli_main(["evaluate", "--checkpoint", checkpoint, "--out", str(tmp_path / "a")]) == 0
    evaluated = json.loads((tmp_path / "a" / "metrics.json").read_text())["datasets"]
    trained = json.loads((out / "metrics.json").read_text())["datasets"]
    assert list(evaluated) == ["market1501"]                                # the run's test set, not the demo's
    assert evaluated["market1501"]["mAP"] == pytest.approx(trained["market1501"]["mAP"], abs=1e-6)
    viper = make_viper_tree(tmp_path / "viper")
    assert cli_main(["evaluate", "--checkpoint", checkpoint, "--out", str(tmp_path / "b"),
                     f"test.datasets=[{{name: viper, root: {viper}}}]"]) == 0     # overrides still apply
    assert list(json.loads((tmp_path / "b" / "metrics.json").read_text())["datasets"]) == ["viper"]
    capsys.readouterr()
    assert cli_main(["evaluate", "--checkpoint", checkpoint, "data.root=/moved/away"]) == 2
    err = capsys.readouterr().err
    assert "data.root=/moved/away on the command line: config key 'data.root' = '/moved/away'" in err
    assert "the config stored in" not in err                 # the override is to blame, not the checkpoint


def test_calibrate_rank_and_tsne_without_config_use_the_checkpoints_own_config(finished, tmp_path):
    _, out = finished
    checkpoint = str(out / "checkpoints" / "last.pt")
    assert cli_main(["calibrate", "--checkpoint", checkpoint, "--out", str(tmp_path / "c"), "--no-store",
                     "--open-set-drop", "0"]) == 0
    report = json.loads((tmp_path / "c" / "last.json").read_text())
    assert list(report["datasets"]) == ["market1501"]                       # the run's test set, not the digits
    assert cli_main(["rank", "--checkpoint", checkpoint, "--out", str(tmp_path / "r"), "--num", "2"]) == 0
    assert any(p.name.startswith("ranking") for p in (tmp_path / "r").iterdir())



def test_no_operating_point_is_stored_from_flip_averaged_features(finished, tmp_path):
    from trytry_reid.evaluation.operating_point import ENTRY_KEY

    root, out = finished
    assert ENTRY_KEY in load_checkpoint(out / "checkpoints" / "last.pt")      # the plain run stores one
    assert cli_main(tiny_args(root, tmp_path / "flip", "test.flip=true")) == 0
    assert ENTRY_KEY not in load_checkpoint(tmp_path / "flip" / "checkpoints" / "last.pt")
