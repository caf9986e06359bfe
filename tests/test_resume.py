"""Exact resume: a run killed (SIGKILL) or stopped (SIGTERM) and resumed equals an uninterrupted run, bit for bit.

The interrupted runs are real child processes (forked, running tests/engine_scripts/tiny_run.py's
``run_child``) that receive real signals; the resumed halves and the reference run happen in this process
with the same seeds and one thread, like the children (float sums depend on the thread count).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from engine_scripts.tiny_run import build, make_evaluate, run_child

from trytry_reid.engine import fit, load_checkpoint
from trytry_reid.engine.signals import ImmediateStop

EPOCHS, EVERY = 3, 3  # 2 steps per epoch: checkpoints after steps 2, 3, 4, 6


def _run(ckpt_dir: Path | None, resume: Path | None = None, every: int = EVERY):
    objects, loaders, options = build(epochs=EPOCHS, ckpt_dir=ckpt_dir, every=every)
    history = fit(objects, loaders, options, evaluate=make_evaluate(objects.model), resume_from=resume)
    return objects, history


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The forked children run single-threaded (see run_child); so does everything they are compared with."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(one_thread):
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


def _child(ckpt_dir: Path, **kwargs) -> tuple[multiprocessing.Process, Path]:
    """Start the tiny run in a forked process (it reuses this process's imports: no slow re-import)."""
    log = ckpt_dir.parent / f"{ckpt_dir.name}.log"
    proc = multiprocessing.get_context("fork").Process(
        target=run_child, args=(ckpt_dir, log), kwargs={"epochs": EPOCHS, **kwargs})
    proc.start()
    return proc, log


def _wait_for_line(log: Path, line: str, proc: multiprocessing.Process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.is_alive():
        if log.exists() and line in log.read_text().splitlines():
            return
        time.sleep(0.02)
    raise AssertionError(f"the child never printed {line!r}; its log: {log.read_text() if log.exists() else ''}")


def test_sigkill_between_checkpoints_then_resume_equals_uninterrupted_run(tmp_path: Path, reference) -> None:
    # checkpoints after steps 2 (epoch end) and 3 (every 3 steps); killed while fetching step 4
    proc, log = _child(tmp_path / "ckpt", every=EVERY, kill_at=4)
    proc.join(timeout=240)
    output = log.read_text()
    assert proc.exitcode == -signal.SIGKILL, output
    assert "fetched 3" in output and "finished" not in output
    last = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert (last["step"], last["epoch"], last["step_in_epoch"]) == (3, 1, 1)
    _assert_same_run(_run(tmp_path / "ckpt", resume=tmp_path / "ckpt" / "last.pt"), reference)


def test_sigterm_finishes_step_writes_checkpoint_and_resumes_exactly(tmp_path: Path, reference) -> None:
    proc, log = _child(tmp_path / "ckpt", sleep=0.5)
    _wait_for_line(log, "fetched 2", proc)  # the last batch of epoch 1: the stop comes before its evaluation
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(timeout=240)
    output = log.read_text()
    assert proc.exitcode == 128 + signal.SIGTERM, output
    assert "SIGTERM received" in output and f"--resume {tmp_path / 'ckpt' / 'last.pt'}" in output
    assert "fetched 3" not in output  # it stopped after the step in flight, before taking another batch
    last = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert (last["step"], last["epoch"], last["step_in_epoch"]) == (2, 0, 2)
    _assert_same_run(_run(tmp_path / "ckpt", resume=tmp_path / "ckpt" / "last.pt", every=0), reference)


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


def _fp16_run(ckpt_dir: Path, crash_at: int | None = None, resume: Path | None = None):
    """fp16 from a loss scale that overflows for the first steps, so the scaler's state matters."""
    objects, loaders, options = build(epochs=EPOCHS, ckpt_dir=ckpt_dir, every=1, amp="fp16")
    objects.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**20)

    def crashing(epoch: int, start: int):
        for b, batch in enumerate(loaders(epoch, start), start=start):
            if epoch * options.steps_per_epoch + b + 1 == crash_at:
                raise RuntimeError("simulated crash")
            yield batch

    history = fit(objects, crashing, options, evaluate=make_evaluate(objects.model), resume_from=resume)
    return objects, history


def test_fp16_loss_scale_resumes_exactly(tmp_path: Path) -> None:
    want = _fp16_run(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fp16_run(tmp_path / "ckpt", crash_at=4)
    assert load_checkpoint(tmp_path / "ckpt" / "last.pt")["scaler"]["scale"] < 2.0**20  # steps were skipped
    got = _fp16_run(tmp_path / "ckpt", resume=tmp_path / "ckpt" / "last.pt")
    assert got[0].scaler.get_scale() == want[0].scaler.get_scale()
    _assert_same_run(got, want)


class _SlowHandle:
    """A checkpoint file whose third write is followed by a signal, as when Ctrl-C is pressed again while
    torch is writing the archive (torch then found its zip position wrong: 'unexpected pos', exit 2)."""

    def __init__(self, fd: int) -> None:
        import io

        self.file, self.calls = io.FileIO(fd, "wb"), 0

    def write(self, data) -> int:
        written = self.file.write(data)
        self.calls += 1
        if self.calls == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return written

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_a_second_signal_during_the_checkpoint_write_lets_it_finish_then_exits_130(tmp_path, monkeypatch):
    from trytry_reid.engine import checkpoint as ckpt

    objects, loaders, options = build(epochs=EPOCHS, ckpt_dir=tmp_path)

    def interrupted(epoch: int, start: int):
        for batch in loaders(epoch, start):
            os.kill(os.getpid(), signal.SIGINT)                  # the first Ctrl-C, during step 1
            monkeypatch.setattr(ckpt.os, "fdopen", lambda fd, mode: _SlowHandle(fd))
            yield batch

    with pytest.raises(ImmediateStop) as info:
        fit(objects, interrupted, options)
    monkeypatch.undo()
    assert info.value.code == 130
    last = load_checkpoint(tmp_path / "last.pt")                   # written completely before stopping
    assert (last["step"], last["epoch"], last["step_in_epoch"]) == (1, 0, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]      # no temporary file left


def test_forked_children_leave_signals_to_the_training_process() -> None:
    from trytry_reid.engine.signals import StopRequest

    with StopRequest() as stop:
        pid = os.fork()
        if pid == 0:                       # a DataLoader worker is such a child: Ctrl-C reaches it too
            try:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                os._exit(0 if stop.requested is None else 1)
            except BaseException:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and stop.requested is None
