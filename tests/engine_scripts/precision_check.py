"""How far bf16 training drifts from float32 on the tiny run, against a bound derived from bf16's precision,
importable by tests and runnable as a script (tests run it with ONEDNN_MAX_CPU_ISA=AVX2 to stand for a CPU
without native bf16; the variable must be set before torch starts oneDNN, hence a child process).

The comparison trains with plain SGD, whose update is linear in the gradient, so the update's relative error
is the gradient's: each input of the three bf16 operations (two convolutions, the classifier) is rounded to
bf16 once forward and once backward, each rounding off by at most the unit roundoff u = 2**-8 (bf16 keeps 8
significant bits), so the classifier's update is off by at most about 12 u relative (first order). Adam, the
run's own optimizer, divides by the gradient's magnitude and turns a rounding that flips a near-zero gradient's
sign into a full step, so its error says nothing about the precision.

    python precision_check.py      # prints one JSON object: the CPU capability and the measured errors
"""

from __future__ import annotations

import json
import os

import torch

from engine_scripts.tiny_run import build
from trytry_reid.engine import build_scheduler, fit

BF16_UNIT_ROUNDOFF = 2.0 ** -8
ROUNDINGS = 12                     # 2 inputs x 3 bf16 operations x (forward + backward)
BF16_UPDATE_BOUND = ROUNDINGS * BF16_UNIT_ROUNDOFF


def classifier_update(epochs: int = 1, **options: object) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights before, after) of the classifier for one tiny run with plain SGD and the given FitOptions."""
    objects, loaders, fit_options = build(seed=5, epochs=epochs, dropout=0.0)
    objects.optimizer = torch.optim.SGD(objects.model.parameters(), lr=0.05)
    objects.scheduler = build_scheduler(objects.optimizer, warmup_steps=0, warmup_factor=1.0,
                                        schedule="multistep", milestones=[], gamma=0.1)
    for key, value in options.items():
        setattr(fit_options, key, value)
    before = objects.model.classifier.weight.detach().clone()
    fit(objects, loaders, fit_options)
    return before, objects.model.classifier.weight.detach().clone()


def relative_update_error(**options: object) -> float:
    """||update with ``options`` - float32 update|| / ||float32 update|| of the classifier."""
    start, reference = classifier_update()
    _, other = classifier_update(**options)
    return float((other - reference).norm() / (reference - start).norm())


def measure() -> dict:
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "bound": BF16_UPDATE_BOUND,
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL"),
            "amp_bf16": relative_update_error(amp="bf16"),
            "fp32_precision_bf16": relative_update_error(fp32_precision="bf16")}


if __name__ == "__main__":
    print(json.dumps(measure()))
