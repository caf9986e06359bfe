"""A folder dataset with only query/ and gallery/ is a test set: evaluate and calibrate take it, training
refuses it with a message that says why."""

from __future__ import annotations

import json

from trytry_reid.data.datasets import build_dataset
from trytry_reid.jobs.cli import main as cli_main

from conftest import REPO
from data_fixtures import make_folder_tree
from test_export import write_tiny_checkpoint

CONFIG = str(REPO / "config" / "demo_digits.yml")


def test_a_folder_without_train_is_a_test_set(tmp_path, capsys):
    root = make_folder_tree(tmp_path / "crops", {"query": {"1": ["a_c1.jpg"], "2": ["b_c1.jpg"]},
                                                 "gallery": {"1": ["c_c2.jpg"], "2": ["d_c2.jpg"],
                                                             "0": ["e_c2.jpg"]}})
    splits = build_dataset("folder", str(root))
    assert splits.train == [] and len(splits.query) == 2 and len(splits.gallery) == 3
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.pt", backbone="small_cnn")
    test_set = f"test.datasets=[{{name: folder, root: {root}, label: mine}}]"
    assert cli_main(["evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "eval"),
                     "--config", CONFIG, test_set, "data.workers=0"]) == 0
    assert list(json.loads((tmp_path / "eval" / "metrics.json").read_text())["datasets"]) == ["mine"]
    assert cli_main(["calibrate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "cal"), "--no-store",
                     "--open-set-drop", "0", "--config", CONFIG, test_set, "data.workers=0",
                     "test.calibration_fpr=0.5"]) == 0
    capsys.readouterr()
    assert cli_main(["train", "--config", CONFIG, "data.name=folder", f"data.root={root}", "test.datasets=[]",
                     f"output_dir={tmp_path / 'run'}"]) == 2
    assert "dataset 'folder' has no training split; it can only be a test set" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
