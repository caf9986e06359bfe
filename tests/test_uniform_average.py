"""The uniform weight average (train.average_epochs): the mean of the last epochs' end weights, written out;
what a run evaluates and stores; exact resume; the config's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_scripts.tiny_run import run_with_average
from torch import nn

from trytry_reid.engine import load_checkpoint
from trytry_reid.engine.averaging import UniformAverage
from trytry_reid.errors import ConfigError
from trytry_reid.jobs.config import load_config

REPO = Path(__file__).resolve().parents[1]


def _perturbed(model: nn.Module) -> dict[str, torch.Tensor]:
    """Move the weights and BatchNorm statistics as a training epoch would; return a copy of the state."""
    model.train()(torch.randn(5, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_the_average_is_the_mean_of_the_window_and_a_copy_before_it() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = UniformAverage(model, last_epochs=3, epochs=5)
    snapshots = []
    for epoch in range(1, 6):
        snapshots.append(_perturbed(model))
        average.after_step(model)  # steps leave it alone
        average.after_epoch(model, epoch)
        got = average.module.state_dict()
        window = snapshots[2:] if epoch >= 3 else snapshots[-1:]  # epochs 3..5; before: the last weights
        for name, value in got.items():
            if name.endswith("num_batches_tracked"):
                assert torch.equal(value, snapshots[-1][name]), name  # copied, not averaged
            else:
                want = torch.stack([s[name].double() for s in window]).mean(0)
                assert torch.allclose(value.double(), want, atol=1e-6), (epoch, name)
        assert average.updates == max(0, epoch - 2)
    assert not average.module.training and not any(p.requires_grad for p in average.module.parameters())


@pytest.mark.parametrize("last_epochs", [0, 6])
def test_a_window_outside_the_run_is_refused(last_epochs: int) -> None:
    with pytest.raises(ValueError, match="spans 1 to 5 \\(all\\) epochs; got"):
        UniformAverage(nn.Linear(2, 2), last_epochs, epochs=5)


def test_the_config_takes_one_weight_average() -> None:
    config = REPO / "config" / "demo_digits.yml"
    assert load_config(config, ["train.average_epochs=3"]).train.average_epochs == 3
    with pytest.raises(ConfigError, match="'train.average_epochs' = 3: expected 0 when train.ema_decay is set"):
        load_config(config, ["train.average_epochs=3", "train.ema_decay=0.99"])


def _run(ckpt_dir: Path, crash_at: int | None = None, resume: Path | None = None):
    return run_with_average(ckpt_dir, 4, lambda model: UniformAverage(model, last_epochs=2, epochs=4), crash_at,
                            resume)


def test_a_run_stores_the_window_mean_and_resumes_it_exactly(tmp_path: Path) -> None:
    """Crash inside the window (at step 8 of 8; last.pt from step 7 holds one snapshot) and resume: same
    average, weights and evaluations; the stored "model" is the mean of the weights at the ends of epochs 3, 4."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums depend on the thread count
    try:
        want, want_history = _run(tmp_path / "ref")
        with pytest.raises(RuntimeError, match="simulated crash"):
            _run(tmp_path / "crash", crash_at=8)
        got, got_history = _run(tmp_path / "crash", resume=tmp_path / "crash" / "last.pt")
    finally:
        torch.set_num_threads(threads)
    epoch3 = load_checkpoint(tmp_path / "ref" / "epoch_0003.pt")["trained_model"]
    state = load_checkpoint(tmp_path / "ref" / "last.pt")
    assert state["average_updates"] == 2 == got.average.updates
    for name, trained in state["trained_model"].items():
        if trained.is_floating_point():
            mean = (epoch3[name].double() + trained.double()) / 2
            assert torch.allclose(state["model"][name].double(), mean, atol=1e-6), name
        assert torch.equal(got.average.module.state_dict()[name], state["model"][name]), name
        assert torch.equal(got.model.state_dict()[name], trained), name
    assert got_history["eval"] == want_history["eval"]
