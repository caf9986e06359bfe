"""Commands stopped by SIGINT / SIGTERM: exit status 128 + signal with one line, no traceback, no temporary
file left, and calibrate's report and checkpoint agree (both changed, or neither). The commands run in child
processes (tests/engine_scripts/signal_cli.py) that send themselves the signal at a chosen moment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from trytry_reid.engine.checkpoint import file_sha256, load_checkpoint
from trytry_reid.jobs.cli import main as cli_main

from conftest import REPO
from data_fixtures import make_market_tree
from test_export import write_images, write_tiny_checkpoint

SCRIPT = REPO / "tests" / "engine_scripts" / "signal_cli.py"
CONFIG = str(REPO / "config" / "demo_digits.yml")


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO / 'tests'}", "TRYTRY_REID_TEST_THREADS": "1"}


def run_cli(when: str, signame: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), when, signame, "--", *argv], capture_output=True,
                          text=True, env=child_env(), timeout=240)


def calibrate_args(checkpoint: Path, market: Path, out: Path) -> list[str]:
    return ["calibrate", "--checkpoint", str(checkpoint), "--out", str(out), "--config", CONFIG,
            f"test.datasets=[{{name: market1501, root: {market}, label: mini}}]", "data.workers=0",
            "test.calibration_fpr=0.25"]


def leftovers(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.is_dir() for p in folder.iterdir() if p.name.endswith(".tmp")]


def assert_one_line_exit(done: subprocess.CompletedProcess, command: str, signame: str) -> None:
    assert done.returncode == 128 + getattr(signal, signame), done.stderr
    assert "Traceback" not in done.stderr and "unexpected pos" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (f"trytry-reid {command}: stopped by {signame}; files are "
                                                     f"written whole or not at all, so none was left half-written")


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return make_market_tree(tmp_path_factory.mktemp("signals") / "market")


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_while_calibrate_writes_the_checkpoint_leaves_report_and_checkpoint_agreeing(
        market, tmp_path, signame):
    checkpoint = write_tiny_checkpoint(tmp_path / "best.pt", backbone="small_cnn")
    done = run_cli("checkpoint-write", signame, *calibrate_args(checkpoint, market, tmp_path / "cal"))
    assert_one_line_exit(done, "calibrate", signame)
    assert leftovers(tmp_path, tmp_path / "cal") == []
    report = json.loads((tmp_path / "cal" / "best.json").read_text())
    assert load_checkpoint(checkpoint)["calibration"] == report["operating_point"]     # the write was completed


def test_a_signal_before_calibrate_writes_changes_nothing(market, tmp_path):
    checkpoint = write_tiny_checkpoint(tmp_path / "best.pt", backbone="small_cnn")
    before = file_sha256(checkpoint)
    done = run_cli("first-image", "SIGTERM", *calibrate_args(checkpoint, market, tmp_path / "cal"))
    assert_one_line_exit(done, "calibrate", "SIGTERM")
    assert file_sha256(checkpoint) == before and not (tmp_path / "cal").exists()
    assert leftovers(tmp_path) == []


def test_ctrl_c_during_extraction_is_exit_130_and_one_line(tmp_path):
    """The terminal sends SIGINT to the whole process group: the command and its DataLoader workers."""
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.pt", backbone="small_cnn")
    write_images(tmp_path / "crops", 12)
    child = subprocess.Popen([sys.executable, str(SCRIPT), "slow-images", "SIGINT", "--", "extract", "--checkpoint",
                              str(checkpoint), "--images", str(tmp_path / "crops"), "--out",
                              str(tmp_path / "f.npz"), "--workers", "2", "--batch-size", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
                             start_new_session=True)
    try:
        assert child.stdout.readline().strip() == "reading"        # a worker is decoding images
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert_one_line_exit(subprocess.CompletedProcess(child.args, child.returncode, out, err), "extract", "SIGINT")
    assert not (tmp_path / "f.npz").exists() and leftovers(tmp_path) == []


def write_two_id_tree(root: Path) -> Path:
    """Two identities, each in query (camera 1) and gallery (camera 2), no distractors."""
    from data_fixtures import market_name, write_image

    for split, camera in (("bounding_box_train", 1), ("query", 1), ("bounding_box_test", 2)):
        for pid in (1, 2):
            write_image(root / split / market_name(pid, camera, 0), (60 * pid, 90, 30 * camera))
    return root


def test_an_open_set_drop_that_leaves_no_gallery_is_reported_as_skipped(tmp_path, capsys):
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.pt", backbone="small_cnn")
    tree = write_two_id_tree(tmp_path / "two")
    assert cli_main([*calibrate_args(checkpoint, tree, tmp_path / "cal"), "--no-store",
                     "--open-set-drop", "0.99"]) == 0
    report = json.loads((tmp_path / "cal" / "tiny.json").read_text())["datasets"]["mini"]["open_set"]
    assert report["gallery_kept"] == 0 and "leaves no gallery image to search" in report["skipped"]


@pytest.mark.parametrize("k", ["0", "-1", "ten"])
def test_search_refuses_a_top_k_below_one_in_one_line(tmp_path, capsys, k):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["search", "--index", str(tmp_path), "--query", str(tmp_path / "q.jpg"), "--top-k", k])
    assert exit_info.value.code == 2
    assert f"argument --top-k: expected an integer >= 1, got '{k}'" in capsys.readouterr().err
