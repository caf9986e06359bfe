"""The rows of the CPU-scale accuracy study (docs/RESULTS.md): one fixed budget, one change per row."""

from __future__ import annotations

CONFIG = "config/mobilenet_market_cpu.yml"

# Budget of every row: mobilenet_v2 from ImageNet weights, 128x64 input, P=16 x K=4, 4 epochs x 25 steps
# (6,400 training images seen, 0.74 of a pass over the devsplit's 8,642), one evaluation at the end on the
# devsplit and on VIPeR. About 8 minutes per row on 2 CPU cores (a step of 64 images takes about 4 s).
BUDGET = ["train.epochs=4", "train.steps_per_epoch=25", "train.eval_every=4", "train.milestones=[3]",
          "test.figures=false", "train.checkpoint_keep=1"]

BASELINE = ["loss.triplet.weight=0", "loss.center.weight=0", "loss.cross_entropy.label_smoothing=0",
            "train.warmup_epochs=0", "data.random_erasing=0", "model.last_stride=2", "model.bnneck=false"]

TRICKS = [
    ("+ triplet", ["loss.triplet.weight=1"]),
    ("+ warmup", ["train.warmup_epochs=1"]),
    ("+ random erasing", ["data.random_erasing=0.5"]),
    ("+ label smoothing", ["loss.cross_entropy.label_smoothing=0.1"]),
    ("+ last stride 1", ["model.last_stride=1"]),
    ("+ BNNeck", ["model.bnneck=true"]),
    ("+ center loss", ["loss.center.weight=0.0005"]),
]


def ablation_rows() -> list[tuple[str, list[str]]]:
    """Table 1: the Bag-of-Tricks ablation, each row adding one trick to the previous one."""
    rows, overrides = [("baseline (CE)", BASELINE)], list(BASELINE)
    for label, change in TRICKS:
        overrides = overrides + change
        rows.append((label, overrides))
    return rows


def full_recipe() -> list[str]:
    return ablation_rows()[-1][1]


def selector_rows() -> list[tuple[str, list[str]]]:
    """Table 2: triplet selection on the full recipe, with and without cross-entropy."""
    rows = []
    for selector in ("random_negative", "hardest", "semihard", "all"):
        for with_ce in (True, False):
            extra = [f"loss.triplet.selector={selector}"]
            if not with_ce:
                extra.append("loss.cross_entropy.weight=0")
            label = f"{selector} {'+ CE' if with_ce else 'only'}"
            rows.append((label, full_recipe() + extra))
    return rows


def init_rows() -> list[tuple[str, list[str]]]:
    """Table 3: ImageNet initialisation vs random initialisation for the full recipe."""
    return [("ImageNet init", full_recipe()), ("random init", full_recipe() + ["model.pretrained=none"])]


TABLES = {"ablation": ablation_rows, "init": init_rows, "selectors": selector_rows}
