"""Uniform weight averages over a finished run's epoch checkpoints, scored on the run's own test sets.

Which span of training should a weight average cover? The run's exponential average (train.ema_decay) covers
about its last tenth at the budgets of docs/RESULTS.md (engine/averaging.py), so it cannot tell. This study
needs one run trained with ``train.checkpoint_keep`` at least its epochs (every epoch_XXXX.pt kept). For each
window ``a-b`` it averages the trained weights saved at the ends of epochs a..b with equal weights (the
stochastic weight averaging of Izmailov et al. 2018) and ranks the run's test sets twice: with the averaged
BatchNorm statistics, and with statistics recomputed on ``--bn-batches`` training batches (statistics of
averaged weights are not the average of the statistics). For a validation run (``data.validation_ids``) the
test set is its held-out training ids. The rows ``run average`` and ``trained, last epoch`` score the run's
own exponential average and final weights.

    python studies/weight_average_study.py --run /tmp/val-s0 --windows 12-12 9-12 5-12

prints one JSON line per row and appends them to ``--out`` (default docs/results/weight_average.jsonl).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from trytry_reid.engine.checkpoint import load_checkpoint
from trytry_reid.engine.rng import seed_everything
from trytry_reid.evaluation.retrieval import evaluate_model
from trytry_reid.jobs import builders
from trytry_reid.jobs.config import load_config

from common import RESULTS


def average_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point entries; other entries (BatchNorm's counters) from the last."""
    return {key: torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
            if value.is_floating_point() else value.clone() for key, value in states[-1].items()}


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches, num_batches: int, channels_last: bool) -> None:
    """Running statistics from ``num_batches`` training batches (cumulative means, train-mode forward)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches seen
    model.train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for index, batch in enumerate(batches):
        if index == num_batches:
            break
        model(batch[0].to(memory_format=fmt))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def score(model: nn.Module, config, test_sets) -> dict[str, dict[str, float]]:
    options = builders.retrieval_options(config, "cpu")
    transform = builders.test_transform(config)
    return {label: evaluate_model(model, label, s.query, s.gallery, transform, **options).summary()
            for label, s in test_sets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder with config.yml and checkpoints/")
    parser.add_argument("--windows", nargs="+",
                        default=["12-12", "11-12", "10-12", "9-12", "8-12", "7-12", "5-12", "1-12"],
                        help="epoch spans a-b (1-based, inclusive) to average")
    parser.add_argument("--bn-batches", type=int, default=50, help="training batches for the BN statistics")
    parser.add_argument("--out", type=Path, default=RESULTS / "weight_average.jsonl")
    args = parser.parse_args()
    config = load_config(args.run / "config.yml")
    seed_everything(config.train.seed)
    splits = builders.build_train_splits(config)
    train = builders.build_train_data(config, splits)
    test_sets = builders.build_test_sets(config, splits)
    model = builders.build_model(config, train.num_classes if builders.needs_classifier(config) else 0)
    model.load_state_dict(load_checkpoint(args.run / "checkpoints" / "last.pt")["model"])
    rows = [("run average", score(model.eval(), config, test_sets))]

    def epoch_weights(epoch: int) -> dict[str, torch.Tensor]:
        state = load_checkpoint(args.run / "checkpoints" / f"epoch_{epoch:04d}.pt")
        return state.get("trained_model", state["model"])

    last = config.train.epochs
    model.load_state_dict(epoch_weights(last))
    rows.append(("trained, last epoch", score(model.eval(), config, test_sets)))
    for window in args.windows:
        first, end = (int(x) for x in window.split("-"))
        model.load_state_dict(average_state([epoch_weights(e) for e in range(first, end + 1)]))
        rows.append((f"uniform average of epochs {first}-{end}", score(model.eval(), config, test_sets)))
        recompute_batchnorm(model, train.loaders(0, 0), args.bn_batches, config.train.channels_last)
        rows.append((f"uniform average of epochs {first}-{end}, BN recomputed", score(model, config, test_sets)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as handle:
        for label, metrics in rows:
            line = json.dumps({"run": str(args.run), "row": label, "seed": config.train.seed,
                               "bn_batches": args.bn_batches, "metrics": metrics, "time": time.time()})
            print(line, flush=True)
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
