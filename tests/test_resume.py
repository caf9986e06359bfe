"""Exact resume: a run killed (SIGKILL) or stopped (SIGTERM) and resumed equals an uninterrupted run, bit for bit.

The interrupted runs are real processes (tests/engine_scripts/tiny_run.py); the resumed halves and the
reference run happen in this process with the same seeds.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine_scripts.tiny_run import build, make_evaluate
from trytry_reid.engine import fit, load_checkpoint
from trytry_reid.engine.signals import ImmediateStop

TESTS = Path(__file__).resolve().parent
EPOCHS, EVERY = 3, 3  # 2 steps per epoch: checkpoints after steps 2, 3, 4, 6


def _run(ckpt_dir: Path | None, resume: Path | None = None, every: int = EVERY):
    objects, loaders, options = build(epochs=EPOCHS, ckpt_dir=ckpt_dir, every=every)
    history = fit(objects, loaders, options, evaluate=make_evaluate(objects.model), resume_from=resume)
    return objects, history


@pytest.fixture(scope="module")
def reference():
    return _run(None)


def _assert_same_run(got, want) -> None:
    (objects, history), (ref_objects, ref_history) = got, want
    for part in ("model", "criterion"):
        mine, theirs = getattr(objects, part).state_dict(), getattr(ref_objects, part).state_dict()
        assert mine.keys() == theirs.keys()
        for name in mine:
            assert torch.equal(mine[name], theirs[name]), f"{part}.{name}"
    for mine, theirs in zip(objects.optimizer.state_dict()["state"].values(),
                            ref_objects.optimizer.state_dict()["state"].values()):
        assert torch.equal(mine["exp_avg_sq"], theirs["exp_avg_sq"])
    assert history["eval"] == ref_history["eval"] and len(history["eval"]) == 1
    assert history["steps"] == ref_history["steps"] and history["lr"] == ref_history["lr"]
    for group in ("loss", "stats"):
        for key, series in ref_history[group].items():
            if key != "images_per_s":  # wall-clock speed differs, everything else must not
                assert _same(history[group][key], series), key


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


def _script(ckpt_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "engine_scripts.tiny_run", str(ckpt_dir), "--epochs", str(EPOCHS), *args]
    return subprocess.Popen(command, cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_between_checkpoints_then_resume_equals_uninterrupted_run(tmp_path: Path, reference) -> None:
    # checkpoints after steps 2 (epoch end) and 3 (every 3 steps); killed while fetching step 4
    proc = _script(tmp_path, "--every", str(EVERY), "--kill-at-step", "4")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL, err
    assert "fetched 3" in out and "finished" not in out
    last = load_checkpoint(tmp_path / "last.pt")
    assert (last["step"], last["epoch"], last["step_in_epoch"]) == (3, 1, 1)
    _assert_same_run(_run(tmp_path, resume=tmp_path / "last.pt"), reference)


def test_sigterm_finishes_step_writes_checkpoint_and_resumes_exactly(tmp_path: Path, reference) -> None:
    proc = _script(tmp_path, "--sleep", "0.5")
    for line in proc.stdout:
        if line.strip() == "fetched 2":  # the last batch of epoch 1: the stop comes before its evaluation
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received" in err and f"--resume {tmp_path / 'last.pt'}" in err
    assert "fetched 3" not in out  # it stopped after the step in flight, before taking another batch
    last = load_checkpoint(tmp_path / "last.pt")
    assert (last["step"], last["epoch"], last["step_in_epoch"]) == (2, 0, 2)
    _assert_same_run(_run(tmp_path, resume=tmp_path / "last.pt", every=0), reference)


def test_second_signal_stops_at_once_without_checkpoint(tmp_path: Path) -> None:
    objects, loaders, options = build(epochs=EPOCHS, ckpt_dir=tmp_path)
    previous = signal.getsignal(signal.SIGTERM)

    def impatient(epoch: int, start: int):
        for batch in loaders(epoch, start):
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    with pytest.raises(ImmediateStop) as info:
        fit(objects, impatient, options)
    assert info.value.code == 128 + signal.SIGTERM
    assert not (tmp_path / "last.pt").exists()  # nothing was written: the first step never finished
    assert signal.getsignal(signal.SIGTERM) == previous  # handlers are uninstalled


def test_resume_refuses_a_weights_only_export(tmp_path: Path) -> None:
    objects, loaders, options = build(epochs=1)
    torch.save({"model": objects.model.state_dict(), "config": {}}, tmp_path / "export.pt")
    with pytest.raises(KeyError, match="cannot resume training: it lacks optimizer"):
        fit(objects, loaders, options, resume_from=tmp_path / "export.pt")
