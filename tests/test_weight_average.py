"""The weight average (train.ema_decay): its update against the definition, what a run evaluates and stores,
exact resume, and the end-to-end promise that the checkpoint's "model" is the evaluated one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from engine_scripts.tiny_run import build, run_with_average
from torch import nn

from trytry_reid.engine import fit, load_checkpoint
from trytry_reid.engine.averaging import WeightAverage, ramp_steps, short_run_warning
from trytry_reid.jobs.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_update_follows_the_definition_with_its_ramp() -> None:
    """average <- d_t * average + (1 - d_t) * weights, d_t = min(decay, (1 + t) / (10 + t)), written out."""
    model = _tiny()
    average = WeightAverage(model, decay=0.2)
    expected = {k: v.clone().double() for k, v in model.state_dict().items()}
    for t in (1, 2, 3):
        model.train()(torch.randn(5, 3))  # moves BatchNorm's running statistics and counts a batch
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        d = min(0.2, (1 + t) / (10 + t))  # 0.18, then 0.2
        assert average.current_decay() == pytest.approx(d)
        average.update(model)
        for name, value in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                expected[name] = value.clone()
            else:
                expected[name] = d * expected[name] + (1 - d) * value.double()
    got = average.module.state_dict()
    for name, want in expected.items():
        if name.endswith("num_batches_tracked"):
            assert torch.equal(got[name], want) and int(want) == 3, name  # copied, not averaged
        else:
            assert torch.allclose(got[name].double(), want, atol=1e-6), name
    assert average.updates == 3 and not average.module.training
    assert not any(p.requires_grad for p in average.module.parameters())


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5])
def test_a_decay_outside_zero_to_one_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="decay must be 0 \\(off\\) or in \\(0, 1\\)"):
        WeightAverage(_tiny(), decay)


def _run(ckpt_dir: Path, crash_at: int | None = None, resume: Path | None = None):
    return run_with_average(ckpt_dir, 3, lambda model: WeightAverage(model, decay=0.6), crash_at, resume)


def test_a_run_evaluates_and_stores_the_average_and_resumes_it_exactly(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums depend on the thread count
    try:
        want, want_history = _run(tmp_path / "ref")
        with pytest.raises(RuntimeError, match="simulated crash"):
            _run(tmp_path / "crash", crash_at=4)
        got, got_history = _run(tmp_path / "crash", resume=tmp_path / "crash" / "last.pt")
    finally:
        torch.set_num_threads(threads)
    state = load_checkpoint(tmp_path / "ref" / "last.pt")
    averaged, trained = want.average.module.state_dict(), want.model.state_dict()
    assert state["average_updates"] == 6 == want.average.updates
    assert any(not torch.equal(averaged[k], trained[k]) for k in trained)  # the average is not the model
    for name in trained:
        assert torch.equal(state["model"][name], averaged[name]), name
        assert torch.equal(state["trained_model"][name], trained[name]), name
        assert torch.equal(got.average.module.state_dict()[name], averaged[name]), name
        assert torch.equal(got.model.state_dict()[name], trained[name]), name
    assert got.average.updates == 6
    assert got_history["eval"] == want_history["eval"]


def test_resuming_without_the_average_is_refused(tmp_path: Path) -> None:
    _run(tmp_path, crash_at=None)
    objects, loaders, options = build(epochs=4, ckpt_dir=tmp_path / "other")
    with pytest.raises(KeyError, match="keeps a weight average .*resume with the run's ema_decay"):
        fit(objects, loaders, options, resume_from=tmp_path / "last.pt")


def test_train_with_an_average_reports_what_its_checkpoint_reproduces(tmp_path: Path, capsys) -> None:
    """metrics.json is the average's: `evaluate` on last.pt gives the same mAP, and a resume that drops
    train.ema_decay is refused before anything is written."""
    config, out = str(REPO / "config" / "demo_digits.yml"), tmp_path / "run"
    quick = ["train.epochs=2", "train.steps_per_epoch=6", "train.eval_every=2", "train.milestones=[1]",
             "test.figures=false", "test.ranking_queries=0", f"output_dir={out}"]
    assert cli_main(["train", "--config", config, *quick, "train.ema_decay=0.9"]) == 0
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["average_updates"] == 12
    assert any(not torch.equal(state["model"][k], state["trained_model"][k]) for k in state["model"])
    ckpt = str(out / "checkpoints" / "last.pt")
    assert cli_main(["evaluate", "--config", config, "--checkpoint", ckpt, "--out", str(tmp_path / "ev")]) == 0
    evaluated = json.loads((tmp_path / "ev" / "metrics.json").read_text())["datasets"]["digits"]
    trained = json.loads((out / "metrics.json").read_text())["datasets"]["digits"]
    assert evaluated["mAP"] == pytest.approx(trained["mAP"], abs=1e-6)
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    capsys.readouterr()
    assert cli_main(["train", "--config", config, *quick, "train.epochs=3", "--resume", ckpt]) != 0
    assert "train.ema_decay" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


def test_ramp_steps_is_where_the_ramp_first_reaches_the_decay() -> None:
    for decay in (0.2, 0.9, 0.99, 0.998, 0.9995):
        average = WeightAverage(_tiny(), decay)
        reached = ramp_steps(decay)
        average.updates = reached - 1  # the next update is step `reached`
        assert average.current_decay() == decay
        if reached > 1:
            average.updates = reached - 2
            assert average.current_decay() < decay
    assert ramp_steps(0.998) == 4490  # (10 * 0.998 - 1) / 0.002


def test_a_run_shorter_than_the_ramp_is_told_so() -> None:
    assert short_run_warning(0.998, 4490) is None
    message = short_run_warning(0.998, 1620)
    assert "4490 steps" in message and "1620" in message and "0.9945" in message and "last 162 steps" in message
