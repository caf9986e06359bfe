"""The decision commands end to end on a tiny checkpoint and a miniature Market tree: calibrate (json, figure,
operating point stored and nothing else changed), verify, index + search with a threshold, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trytry_reid.engine.checkpoint import load_checkpoint
from trytry_reid.jobs.cli import main as cli_main

from conftest import REPO
from data_fixtures import make_market_tree, market_name, write_image
from test_export import write_images, write_tiny_checkpoint

CONFIG = str(REPO / "config" / "demo_digits.yml")


def mini_set(root: Path) -> list[str]:
    return [CONFIG, f"test.datasets=[{{name: market1501, root: {root}, label: mini}}]", "data.workers=0"]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A tiny checkpoint calibrated on the miniature Market tree at FPR 0.25 (its ~30 negative pairs cannot
    resolve 1e-3), plus the command's output folder and printed report."""
    root = tmp_path_factory.mktemp("decide")
    market = make_market_tree(root / "market")
    checkpoint = write_tiny_checkpoint(root / "tiny.pt")
    before = load_checkpoint(checkpoint)
    code = cli_main(["calibrate", "--checkpoint", str(checkpoint), "--out", str(root / "cal"), "--config",
                     *mini_set(market), "test.calibration_fpr=0.25"])
    assert code == 0
    return checkpoint, before, root, market


def test_calibrate_writes_json_figure_and_stores_only_the_operating_point(calibrated):
    checkpoint, before, root, _ = calibrated
    payload = json.loads((root / "cal" / "tiny.json").read_text())          # named after the checkpoint
    mini = payload["datasets"]["mini"]
    assert (mini["num_positive"], mini["num_excluded"]) == (6, 3)       # counted by hand from MINI_MARKET
    assert mini["num_positive"] + mini["num_negative"] + mini["num_excluded"] == 4 * 8
    assert [p["target_fpr"] for p in mini["operating_points"]] == [1e-2, 1e-3, 1e-4]
    assert set(mini) >= {"auc", "eer", "roc", "histogram", "open_set", "retrieval", "chosen"}
    assert 0.0 <= mini["auc"] <= 1.0 and mini["retrieval"]["auc"] == mini["auc"]
    assert (root / "cal" / "tiny.png").stat().st_size > 10_000
    after = load_checkpoint(checkpoint)
    entry = after["calibration"]
    assert entry == payload["operating_point"] and entry["dataset"] == "mini" and entry["target_fpr"] == 0.25
    assert entry["threshold"] == mini["chosen"]["threshold"] and entry["fpr"] <= 0.25
    assert set(after) == set(before) | {"calibration"}
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    assert all(after[k] == before[k] for k in before if k != "model")


def test_calibrate_no_store_leaves_the_checkpoint_alone(calibrated, tmp_path):
    _, _, _, market = calibrated
    checkpoint = write_tiny_checkpoint(tmp_path / "plain.pt")
    assert cli_main(["calibrate", "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--no-store",
                     "--open-set-drop", "0", "--config", *mini_set(market)]) == 0
    assert "calibration" not in load_checkpoint(checkpoint)
    assert "open_set" not in json.loads((tmp_path / "plain.json").read_text())["datasets"]["mini"]


def verify_json(capsys, *args: str) -> dict:
    assert cli_main(["verify", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_verify_decides_with_the_stored_threshold_and_exits_zero_either_way(calibrated, capsys):
    checkpoint, _, _, market = calibrated
    entry = load_checkpoint(checkpoint)["calibration"]
    a, b = sorted((market / "query").glob("0001_*.jpg"))[:1] + sorted((market / "query").glob("0003_*.jpg"))[:1]
    same = verify_json(capsys, "--checkpoint", str(checkpoint), str(a), str(a))
    assert same["distance"] == pytest.approx(0.0, abs=1e-5) and same["verdict"] == "same" and same["same"]
    assert (same["threshold"], same["fpr"], same["tpr"]) == (entry["threshold"], entry["fpr"], entry["tpr"])
    assert same["threshold_source"] == "calibrated" and same["dataset"] == "mini"
    pair = verify_json(capsys, "--checkpoint", str(checkpoint), str(a), str(b))
    assert pair["verdict"] == ("same" if pair["distance"] <= entry["threshold"] else "different")
    strict = verify_json(capsys, "--checkpoint", str(checkpoint), str(a), str(b), "--threshold", "0")
    assert strict["verdict"] == "different" and strict["threshold_source"] == "explicit"
    assert cli_main(["verify", "--checkpoint", str(checkpoint), str(a), str(b), "--threshold", "0"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("different: distance ") and "> threshold 0.0000 (explicit; FPR" in line


def test_verify_errors_are_one_clear_line(calibrated, tmp_path, capsys):
    checkpoint, _, _, market = calibrated
    good = next((market / "query").glob("0001_*.jpg"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    cases = [([str(good), str(tmp_path / "absent.jpg")], checkpoint, "image not found"),
             ([str(good), str(broken)], checkpoint, "cannot read image"),
             ([str(good), str(good)], write_tiny_checkpoint(tmp_path / "plain.pt"),
              "has no calibration: run `trytry-reid calibrate"),
             ([str(good), str(good), "--threshold", "3"], checkpoint, "cosine distance in [0, 2]")]
    for args, ckpt, message in cases:
        assert cli_main(["verify", "--checkpoint", str(ckpt), *args]) == 2
        assert message in capsys.readouterr().err
    assert cli_main(["verify", "--checkpoint", str(tmp_path / "plain.pt"), str(good), str(good),
                     "--threshold", "0.5"]) == 0
    assert "FPR/TPR of this threshold unknown" in capsys.readouterr().out


def test_index_carries_the_threshold_and_search_flags_results(calibrated, tmp_path, capsys):
    checkpoint, _, _, market = calibrated
    entry = load_checkpoint(checkpoint)["calibration"]
    gallery = market / "bounding_box_test"
    assert cli_main(["index", "--checkpoint", str(checkpoint), "--images", str(gallery), "--out",
                     str(tmp_path / "idx"), "--workers", "0"]) == 0
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["info"]["calibration"] == entry
    query = sorted(gallery.glob("0001_*.jpg"))[0]
    capsys.readouterr()
    assert cli_main(["search", "--index", str(tmp_path / "idx"), "--query", str(query), "--top-k", "4"]) == 0
    captured = capsys.readouterr()
    assert "note:" not in captured.err                  # the index's copy is the checkpoint's current point
    lines = captured.out.splitlines()
    assert lines[0].split()[2] == "within" and lines[0].endswith(query.name)
    assert f"results within the threshold {entry['threshold']:.4f} (calibrated: FPR" in lines[-1]
    stranger = write_images(tmp_path / "stranger", 1, seed=5)[0]
    assert cli_main(["search", "--index", str(tmp_path / "idx"), "--query", str(stranger), "--top-k", "3",
                     "--threshold", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(line.split()[2] == "beyond" for line in lines[:3])
    assert lines[-1].startswith("unknown: no gallery image within the threshold 0.0000 (explicit")
    assert cli_main(["search", "--index", str(tmp_path / "idx"), "--query", str(stranger), "--top-k", "3",
                     "--threshold", "none"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines[0].split()) == 3 and lines[-1].startswith("no threshold")


def write_tree(root: Path, query: dict[int, list[int]], gallery: dict[int, list[int]]) -> Path:
    for split, ids in (("bounding_box_train", {2: [1, 2]}), ("query", query), ("bounding_box_test", gallery)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for pid, cameras in ids.items():
            for frame, camera in enumerate(cameras):
                write_image(root / split / market_name(pid, camera, frame), (40 * pid % 256, 30 * camera, 90))
    return root


def test_a_set_without_negative_or_positive_pairs_is_a_clear_error(tmp_path, capsys):
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.pt")
    one_identity = write_tree(tmp_path / "one", {1: [1]}, {1: [2, 3]})
    assert cli_main(["calibrate", "--checkpoint", str(checkpoint), "--config", *mini_set(one_identity)]) == 2
    assert "no positive or no negative query-gallery pairs" in capsys.readouterr().err
    same_camera = write_tree(tmp_path / "cam", {1: [1]}, {1: [1], 3: [2]})
    assert cli_main(["calibrate", "--checkpoint", str(checkpoint), "--config", *mini_set(same_camera)]) == 2
    assert "no valid query" in capsys.readouterr().err
    assert "calibration" not in load_checkpoint(checkpoint)
