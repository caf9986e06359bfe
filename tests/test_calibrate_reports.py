"""Calibration reports are named after the checkpoint they describe (calibrating last.pt keeps best.pt's
report), and replacing a stored operating point or a report says what was replaced (old and new threshold)."""

from __future__ import annotations

import json

from trytry_reid.engine.checkpoint import load_checkpoint
from trytry_reid.jobs.cli import main as cli_main

from conftest import REPO
from data_fixtures import make_market_tree
from test_export import write_tiny_checkpoint

CONFIG = str(REPO / "config" / "demo_digits.yml")


def calibrate(checkpoint, market, *extra: str) -> int:
    return cli_main(["calibrate", "--checkpoint", str(checkpoint), "--open-set-drop", "0", "--config", CONFIG,
                     f"test.datasets=[{{name: market1501, root: {market}, label: mini}}]", "data.workers=0", *extra])


def test_reports_are_per_checkpoint_and_replacements_are_announced(tmp_path, capsys):
    market = make_market_tree(tmp_path / "market")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    best = write_tiny_checkpoint(run / "checkpoints" / "best.pt", backbone="small_cnn")
    last = write_tiny_checkpoint(run / "checkpoints" / "last.pt", backbone="small_cnn", seed=1)
    assert calibrate(best, market, "test.calibration_fpr=0.25") == 0
    first = load_checkpoint(best)["calibration"]
    out = capsys.readouterr().out
    assert f"operating point stored in {best}: threshold {first['threshold']:.4f}" in out
    assert calibrate(last, market, "--no-store", "test.calibration_fpr=0.25") == 0
    capsys.readouterr()
    reports = run / "calibration"
    assert sorted(p.name for p in reports.iterdir()) == ["best.json", "best.png", "last.json", "last.png"]
    assert json.loads((reports / "best.json").read_text())["operating_point"] == first       # not replaced
    assert calibrate(best, market, "test.calibration_fpr=0.5") == 0
    second = load_checkpoint(best)["calibration"]
    out = capsys.readouterr().out
    assert second["threshold"] != first["threshold"]
    assert (f"operating point of {best} replaced: threshold {first['threshold']:.4f} (FPR {first['fpr']:.2e}, "
            f"TPR {first['tpr']:.3f} on mini, {first['date']}) -> threshold {second['threshold']:.4f}") in out
    assert f"(replacing the report of {best} written before, threshold {first['threshold']:.4f})" in out
    assert json.loads((reports / "best.json").read_text())["operating_point"] == second
