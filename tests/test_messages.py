"""Messages that say what is true: the value to blame (the command line or the checkpoint's stored config),
every config problem at once, and the right name for the wrong input (a folder, a non-ONNX file, a frame)."""

from __future__ import annotations

import numpy as np
import pytest

from trytry_reid.engine.checkpoint import load_checkpoint, save_checkpoint
from trytry_reid.errors import ConfigError
from trytry_reid.jobs.cli import main as cli_main
from trytry_reid.jobs.config import load_config, to_dict

from conftest import REPO
from test_export import write_images, write_tiny_checkpoint

ENTRY = {"metric": "cosine", "target_fpr": 0.1, "threshold": 0.5, "fpr": 0.1, "tpr": 0.9, "dataset": "hand"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small checkpoint, calibrated, storing a complete config (the digits demo's, which needs no data root)."""
    root = tmp_path_factory.mktemp("messages")
    path = write_tiny_checkpoint(root / "best.pt", backbone="small_cnn")
    state = load_checkpoint(path)
    config = to_dict(load_config(REPO / "config" / "demo_digits.yml"))
    config["model"] = {**config["model"], **state["config"]["model"]}
    config["data"] = {**config["data"], **state["config"]["data"]}
    state.update(config=config, calibration=ENTRY)
    save_checkpoint(state, path, keep=0)
    return path, write_images(root / "images", 2)


def test_verify_threshold_none_on_a_calibrated_checkpoint_says_what_is_wrong(checkpoint, capsys):
    path, images = checkpoint
    assert cli_main(["verify", "--checkpoint", str(path), *map(str, images), "--threshold", "none"]) == 2
    err = capsys.readouterr().err
    assert "verify decides with a threshold and --threshold none gives none" in err
    assert "has no calibration" not in err


def test_verify_names_a_folder_as_a_folder(checkpoint, capsys):
    path, images = checkpoint
    assert cli_main(["verify", "--checkpoint", str(path), str(images[0]), str(images[0].parent)]) == 2
    err = capsys.readouterr().err
    assert f"{images[0].parent} is a folder, not an image file" in err and "not found" not in err


def test_a_bad_override_is_blamed_on_the_command_line_not_the_checkpoint(checkpoint, capsys):
    path, _ = checkpoint
    assert cli_main(["calibrate", "--checkpoint", str(path), "test.calibration_fpr=5"]) == 2
    err = capsys.readouterr().err
    assert ("test.calibration_fpr=5 on the command line: config key 'test.calibration_fpr' = 5.0: expected a "
            "false-positive rate in (0, 1)") in err
    assert "the config stored in" not in err


def test_problems_of_both_origins_are_each_labelled(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    state = load_checkpoint(path)
    state["config"]["test"]["datasets"] = [{"name": "viper", "root": str(tmp_path / "moved"), "label": None}]
    moved = tmp_path / "moved.pt"
    save_checkpoint(state, moved, keep=0)
    assert cli_main(["evaluate", "--checkpoint", str(moved), "test.calibration_fpr=0"]) == 2
    err = capsys.readouterr().err
    assert "2 config problems:" in err
    assert f"the config stored in {moved}: config key 'test.datasets[0].root' = '{tmp_path / 'moved'}'" in err
    assert "test.calibration_fpr=0 on the command line: config key 'test.calibration_fpr' = 0.0" in err


def test_every_config_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(REPO / "config" / "mobilenet_market_cpu.yml",
                    [f"data.root={tmp_path}", "train.epochs=4", "model.pretrained=/missing/weights.pth",
                     "test.datasets=[{name: viper, root: /missing/viper}]"])
    message = str(info.value)
    assert message.startswith("3 config problems:")
    for expected in ("config key 'train.average_epochs' = 8: expected 0 (off) to train.epochs (4)",
                     "config key 'model.pretrained' = '/missing/weights.pth': expected 'imagenet', 'none'",
                     "config key 'test.datasets[0].root' = '/missing/viper': expected an existing folder"):
        assert expected in message
    with pytest.raises(ConfigError, match=r"^config key 'train.lr' = -1.0: expected a positive number$"):
        load_config(REPO / "config" / "demo_digits.yml", ["train.lr=-1"])      # one problem: its own message


def test_a_file_that_is_not_onnx_is_named_as_such(checkpoint):
    pytest.importorskip("onnx")
    from trytry_reid.serving.embedder import Embedder

    path, _ = checkpoint
    with pytest.raises(ValueError, match=rf"{path} is not an ONNX model .*export one with `trytry-reid export`"):
        Embedder.from_onnx(path)


def test_a_float_frame_is_named_as_the_frame_not_as_image_0(checkpoint):
    from trytry_reid.serving.embedder import Embedder

    embedder = Embedder.from_checkpoint(checkpoint[0])
    frame = np.zeros((60, 80, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"frame must be an H x W x 3 uint8 array .*shape \(60, 80, 3\) dtype "
                                         r"float32") as info:
        embedder.embed_boxes(frame, [[0, 0, 40, 50]])
    assert "image 0" not in str(info.value)
