"""The study scripts' tables and resume keys, run as a user runs them (tests import nothing from studies/):
RESULTS.md's peer table (every pair kept, newest first, mean and range over each row's seeds), the weight-average
study's table (a column per seed), and the accuracy runner's record of rows already run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def study(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(REPO / "studies" / script), *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def printed_table(tmp_path: Path, kind: str, lines: list[dict]) -> list[str]:
    path = tmp_path / f"{kind}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = study("results_table.py", "--print-table", kind, str(path))
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def peer_line(pair: str, system: str, seed: int, map_: float, speed: float) -> dict:
    metric = {"rank1": map_ + 0.1, "mAP": map_}
    return {"pair": pair, "system": system, "label": "same epochs", "seed": seed, "epochs": 12,
            "images_per_s": speed, "train_s": 100.0, "metrics": {"market1501-devsplit": metric, "viper": metric}}


def test_peer_table_keeps_every_pair_newest_first_with_seed_range(tmp_path: Path) -> None:
    lines = printed_table(tmp_path, "peers", [
        peer_line("20260101-000000", "ours", 0, 0.40, 100.0),
        peer_line("20260202-000000", "ours", 0, 0.50, 110.0),
        peer_line("20260202-000000", "ours", 1, 0.54, 120.0),
        peer_line("20260202-000000", "peer", 0, 0.45, 90.0),
    ])
    rows = lines[2:]
    assert len(rows) == 3
    assert rows[0].startswith("| ours, same epochs | 62.0 (60.0-64.0) | 52.0 (50.0-54.0) |")
    assert "| 0, 1 | 115.0 |" in rows[0] and rows[0].endswith("| 20260202-000000 |")
    assert rows[1].startswith("| peer, same epochs | 55.0 | 45.0 |")
    assert rows[2].startswith("| ours, same epochs | 50.0 | 40.0 |") and "20260101-000000" in rows[2]
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_headline_calls_a_gain_a_win_only_when_the_seed_ranges_are_apart(tmp_path: Path) -> None:
    """The README's table: mean (range) per test set, the higher mean in bold, and a verdict per set where a
    gain with overlapping seed ranges is a tie (here VIPeR: +1.0 on the means, ranges 20-24 and 20-22)."""
    pair = "20260303-000000"
    lines = [dict(peer_line(pair, system, seed, dev, 80.0), metrics={
        "market1501-devsplit": {"rank1": dev, "mAP": dev}, "viper_test": {"rank1": vip, "mAP": vip}},
        steps_per_epoch=100)
        for system, seed, dev, vip in [("trytry-reid", 0, 0.62, 0.20), ("trytry-reid", 1, 0.64, 0.24),
                                       ("torchreid 0.2.5", 0, 0.58, 0.20), ("torchreid 0.2.5", 1, 0.59, 0.22)]]
    lines.append(peer_line("20250101-000000", "trytry-reid", 0, 0.9, 1.0))  # an older pair: not the headline
    printed = printed_table(tmp_path, "headline", lines)
    assert printed[0] == "| | devsplit mAP | VIPeR test half mAP | training images/s |"
    assert printed[2] == ("| trytry-reid, `mobilenet_market_cpu.yml` | **63.0** (62.0-64.0) | **22.0** (20.0-24.0) | "
                          "80.0 |")
    assert printed[3] == "| torchreid 0.2.5, its plain baseline | 58.5 (58.0-59.0) | 21.0 (20.0-22.0) | 80.0 |"
    verdicts = printed[-1]
    assert f"pair {pair}" in verdicts
    assert "devsplit: +4.5 (our lowest seed 62.0 above torchreid's highest 59.0: a win)" in verdicts
    assert "VIPeR test half: +1.0 (the seed ranges overlap, ours 20.0-24.0 against 20.0-22.0: a tie)" in verdicts


def test_headline_gives_no_verdict_on_one_seed_and_refuses_pairs_with_other_seeds(tmp_path: Path) -> None:
    pair = "20260404-000000"
    one_seed = [peer_line(pair, "trytry-reid", 0, 0.62, 80.0), peer_line(pair, "torchreid 0.2.5", 0, 0.58, 80.0)]
    assert "devsplit: +4.0 (one seed: no verdict)" in printed_table(tmp_path, "headline", one_seed)[-1]
    path = tmp_path / "peers.jsonl"
    extra_seed = peer_line(pair, "trytry-reid", 1, 0.6, 80.0)
    path.write_text("".join(json.dumps(line) + "\n" for line in one_seed + [extra_seed]))
    done = study("results_table.py", "--print-table", "headline", str(path))
    assert done.returncode != 0 and f"pair {pair} has seeds [0, 1] for trytry-reid but [0] for torchreid" in done.stderr


def test_average_table_has_a_column_per_seed_and_the_mean(tmp_path: Path) -> None:
    def line(row: str, seed: int, map_: float) -> dict:
        return {"row": row, "seed": seed, "metrics": {"val": {"rank1": map_ + 0.1, "mAP": map_}}}

    lines = printed_table(tmp_path, "weight_average", [
        line("run average", 0, 0.78), line("run average", 1, 0.76), line("epochs 5-12", 0, 0.80),
        line("epochs 5-12", 1, 0.77), line("one seed", 1, 0.5)])
    assert lines[0] == "| weights ranked | seed 0 | seed 1 | mean mAP |"
    assert lines[2] == "| run average | 78.0 (88.0) | 76.0 (86.0) | 77.0 |"
    assert lines[3] == "| epochs 5-12 | 80.0 (90.0) | 77.0 (87.0) | 78.5 |"
    assert lines[4] == "| one seed | - | 50.0 (60.0) | 50.0 |"
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_accuracy_resume_reads_only_the_tables_files_and_knows_the_former_config_paths(tmp_path: Path) -> None:
    """A row already in its table's file is skipped; peers.jsonl and calibration.jsonl (other records, no
    ``config`` key) must not be read as rows (reading them once crashed every table run). Rows recorded when
    the study configs lived in benchmarks/configs/ are the same rows as studies/configs/ ones."""
    (tmp_path / "calibration.jsonl").write_text('{"row": "x", "checkpoint": "c.pt"}\n')
    (tmp_path / "peers.jsonl").write_text('{"system": "p", "config": "c.yml", "overrides": [], "seed": 0}\n')
    (tmp_path / "study_12.jsonl").write_text(
        '{"row": "r", "config": "s.yml", "overrides": ["a=1"], "seed": 0}\n'
        '{"row": "q", "config": "benchmarks/configs/study_12epochs.yml", "overrides": [], "seed": 1}\n')
    done = study("accuracy.py", "--known-runs", "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    keys = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(keys) == [["s.yml", ["a=1"], 0], ["studies/configs/study_12epochs.yml", [], 1]]


def test_every_recorded_study_row_is_still_a_row() -> None:
    """docs/results' recorded rows key the rows the runner makes (config path, overrides): a dry run names any
    recorded row that no row makes any more (a moved config or a changed override would orphan a whole table,
    and the runner would run it again)."""
    done = study("accuracy.py", "--table", "all", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "no longer a row" not in done.stdout, done.stdout


def test_the_results_page_is_what_the_recorded_runs_give() -> None:
    """docs/RESULTS.md is generated: a hand edit, or a recorded run added without regenerating the page, fails."""
    done = study("results_table.py", "--check")
    assert done.returncode == 0, done.stdout + done.stderr
