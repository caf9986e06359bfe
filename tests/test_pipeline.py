"""End to end: the demo command in reduced form, its outputs, resume, evaluate/rank/tsne and CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from trytry_reid.engine.checkpoint import load_checkpoint
from trytry_reid.jobs.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
# The demo with 3 of its 8 epochs (39 steps): enough for rank-1 >= 0.95 on digits.
QUICK = ["train.epochs=3", "train.eval_every=3", "train.milestones=[2]", "test.ranking_queries=4"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """`python main.py` (the README's main job) with fewer steps, in a subprocess like a user runs it."""
    out = tmp_path_factory.mktemp("demo") / "run"
    cache = tmp_path_factory.getbasetemp() / "cache"
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), *QUICK, f"output_dir={out}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "TRYTRY_REID_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run folder:" in proc.stdout and "rank1" in proc.stdout
    (out.parent / "stdout.txt").write_text(proc.stdout)       # beside the run folder, not in it
    return out


def test_the_run_summary_lists_both_checkpoints(demo_run: Path):
    listed = (demo_run.parent / "stdout.txt").read_text().split("run folder:")[1].split()
    assert str(demo_run / "checkpoints" / "best.pt") in listed and str(demo_run / "checkpoints" / "last.pt") in listed


def test_every_file_of_the_run_has_the_mode_the_umask_gives(demo_run: Path):
    from trytry_reid.atomic import current_umask

    modes = {str(p.relative_to(demo_run)): oct(p.stat().st_mode & 0o777) for p in demo_run.rglob("*") if p.is_file()}
    assert set(modes.values()) == {oct(0o666 & ~current_umask())}, modes


def test_demo_writes_every_output(demo_run: Path):
    for name in ("config.yml", "metrics.json", "summary.json", "curves.png", "checkpoints/last.pt",
                 "checkpoints/best.pt", "figures/ranking_digits.png", "figures/ranking_digits.json",
                 "figures/tsne_digits.png"):
        assert (demo_run / name).is_file(), name
    assert any((demo_run / "tb").iterdir())
    metrics = json.loads((demo_run / "metrics.json").read_text())
    digits = metrics["datasets"]["digits"]
    assert set(digits) >= {"rank1", "rank5", "rank10", "mAP", "mINP"}
    assert all(0.0 <= digits[k] <= 1.0 for k in ("rank1", "rank5", "rank10", "mAP", "mINP"))
    assert digits["rank1"] <= digits["rank5"] <= digits["rank10"]
    assert digits["rank1"] >= 0.95, digits  # a triplet + CE embedding that works, not just runs
    assert metrics["epoch"] == 3
    with Image.open(demo_run / "curves.png") as img:
        assert img.size[0] > 400 and img.size[1] > 300


def test_each_evaluation_calibrates_and_the_checkpoints_carry_the_operating_point(demo_run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    digits = json.loads((demo_run / "metrics.json").read_text())["datasets"]["digits"]
    assert 0.5 < digits["auc"] <= 1.0 and 0.0 <= digits["eer"] < 0.5 and 0.0 <= digits["tpr@fpr=1e-3"] <= 1.0
    for name in ("last.pt", "best.pt"):
        entry = load_checkpoint(demo_run / "checkpoints" / name)["calibration"]
        assert entry["metric"] == "cosine" and entry["target_fpr"] == 1e-3 and entry["dataset"] == "digits"
        assert entry["epoch"] == 3 and entry["fpr"] <= 1e-3 and entry["auc"] == pytest.approx(digits["auc"])
    assert (demo_run / "figures" / "calibration.png").is_file()
    events = EventAccumulator(str(demo_run / "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert {"eval/digits/auc", "eval/digits/tpr@fpr=1e-3"} <= set(events.Tags()["scalars"])
    assert "calibration" in events.Tags()["images"]


def test_checkpoint_is_weights_only_and_self_describing(demo_run: Path):
    state = load_checkpoint(demo_run / "checkpoints" / "last.pt")
    assert state["config"]["model"]["backbone"] == "small_cnn"
    assert state["config"]["data"]["name"] == "digits"


def test_evaluate_rank_tsne_commands_from_checkpoint(demo_run: Path, tmp_path: Path, capsys):
    config, ckpt = str(REPO / "config" / "demo_digits.yml"), str(demo_run / "checkpoints" / "last.pt")
    assert cli_main(["evaluate", "--config", config, "--checkpoint", ckpt, "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "digits" in table and "mAP" in table
    evaluated = json.loads((tmp_path / "metrics.json").read_text())["datasets"]["digits"]
    trained = json.loads((demo_run / "metrics.json").read_text())["datasets"]["digits"]
    assert evaluated["mAP"] == pytest.approx(trained["mAP"], abs=1e-6)  # same weights, same numbers
    assert cli_main(["rank", "--config", config, "--checkpoint", ckpt, "--queries", "worst", "--num", "3",
                     "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "ranking_digits_worst.json").read_text())["rows"]
    assert len(rows) == 3
    aps = [row["ap"] for row in rows]  # the true AP of each drawn query, for `serve --eval-run`
    assert all(0.0 <= ap <= 1.0 for ap in aps) and aps == sorted(aps)
    from trytry_reid.serving.eval_run import load_eval_run

    served = load_eval_run(tmp_path / "ranking_digits_worst.json")       # its images lie under dataset_roots
    assert [row.query_path.name for row in served] == [Path(row["query_path"]).name for row in rows]
    assert cli_main(["tsne", "--config", config, "--checkpoint", ckpt, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tsne_digits.png").is_file()


def test_missing_market_root_says_what_and_where(capsys, tmp_path):
    code = cli_main(["train", "--config", str(REPO / "config" / "resnet_softtrip.yml")])
    err = capsys.readouterr().err
    assert code == 2
    assert "data.root" in err and "market1501" in err


def test_typo_override_fails_before_training(capsys):
    code = cli_main(["train", "--config", str(REPO / "config" / "demo_digits.yml"), "train.epoch=3"])
    assert code == 2
    assert "Did you mean 'train.epochs'" in capsys.readouterr().err


def test_every_command_has_help():
    for command in ("train", "evaluate", "calibrate", "verify", "extract", "index", "search", "rank", "tsne",
                    "export", "serve"):
        with pytest.raises(SystemExit) as exit_info:
            cli_main([command, "--help"])
        assert exit_info.value.code == 0


def test_extract_index_search_export_commands(demo_run: Path, tmp_path: Path, capsys):
    """The serving commands on the demo's checkpoint and a folder of Market-named crops."""
    import shutil

    import numpy as np

    from trytry_reid.data.datasets import build_dataset

    folder = tmp_path / "crops"
    folder.mkdir()
    for i, record in enumerate(build_dataset("digits", None).gallery[:12]):
        shutil.copy(record.path, folder / f"{record.pid + 1:04d}_c2s1_{i:06d}_00.png")
    ckpt = str(demo_run / "checkpoints" / "last.pt")
    assert cli_main(["extract", "--checkpoint", ckpt, "--images", str(folder), "--out", str(tmp_path / "f.npz"),
                     "--workers", "0"]) == 0
    with np.load(tmp_path / "f.npz", allow_pickle=False) as data:
        features = data["features"]
        assert features.shape[0] == 12
        np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    assert cli_main(["index", "--checkpoint", ckpt, "--images", str(folder), "--out", str(tmp_path / "idx"),
                     "--workers", "0"]) == 0
    capsys.readouterr()
    query = sorted(folder.iterdir())[0]
    assert cli_main(["search", "--index", str(tmp_path / "idx"), "--query", str(query), "--top-k", "5",
                     "--figure", str(tmp_path / "search.png")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert len(lines) == 5 and lines[0].split()[-1].endswith(query.name)  # the query itself ranks first
    assert (tmp_path / "search.png").is_file()
    assert cli_main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "m.onnx"),
                     "--check-images", str(folder)]) == 0
    assert "max_abs_diff" in capsys.readouterr().out


@pytest.mark.parametrize("argv, overrides, resume", [
    (["train", "a.b=1", "--check-data", "c.d=2"], ["a.b=1", "c.d=2"], None),
    (["train", "--check-data", "a.b=1", "--overwrite", "c.d=[1, 2]"], ["a.b=1", "c.d=[1, 2]"], None),
    (["train", "a.b=1", "--resume", "train.epochs=3"], ["a.b=1", "train.epochs=3"], "auto"),
    (["train", "--resume", "runs/x/checkpoints/last.pt", "a.b=1"], ["a.b=1"], "runs/x/checkpoints/last.pt"),
])
def test_overrides_may_follow_flags(argv, overrides, resume):
    from trytry_reid.jobs.cli import parse_args

    args = parse_args(argv)
    assert args.overrides == overrides and args.resume == resume


def test_an_override_after_a_flag_is_applied_and_unknown_flags_still_fail(capsys):
    config = str(REPO / "config" / "demo_digits.yml")
    assert cli_main(["train", "--config", config, "train.epochs=1", "--check-data", "train.epoch=3"]) == 2
    assert "Did you mean 'train.epochs'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli_main(["train", "--config", config, "--no-such-flag", "train.epochs=3"])
    assert info.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["search", "--index", "i", "--query", "q", "train.epochs=3"])    # search takes no overrides


def test_resume_takes_the_weights_from_the_checkpoint_not_from_model_pretrained(tmp_path: Path):
    """A resumed run's weights come from last.pt: its starting-weights file is not read again (an ImageNet file
    that left the cache would be downloaded, a file changed since would be refused or, worse, loaded)."""
    import torch

    from trytry_reid.models.backbones import build_backbone

    weights = tmp_path / "trunk.pth"
    torch.save(build_backbone("small_cnn", last_stride=2)[0].state_dict(), weights)
    config = str(REPO / "config" / "demo_digits.yml")
    run = ["--config", config, f"model.pretrained={weights}", "train.steps_per_epoch=2", "train.eval_every=1",
           "test.figures=false", "test.ranking_queries=0", f"output_dir={tmp_path / 'run'}"]
    assert cli_main(["train", *run, "train.epochs=1", "train.milestones=[1]"]) == 0
    torch.save({"unrelated.weight": torch.zeros(1)}, weights)      # no longer fits the backbone
    assert cli_main(["train", *run, "train.epochs=2", "train.milestones=[1]", "--resume"]) == 0
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
