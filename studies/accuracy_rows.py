"""The rows of the CPU accuracy study (docs/RESULTS.md): per table, a base config, a budget and one change per row.

Two budgets:
- 12 epochs: 12 full passes over the training set (135 steps of P=16 x K=4 on the devsplit), from
  ``studies/configs/study_12epochs.yml`` (torchreid's plain baseline, every lever spelled out).
  ``recipe_val`` chooses the recipe on a validation split carved from the training identities
  (``data.validation_ids=100``: train on 401 ids, rank the other 100); the other tables report the devsplit
  test split and VIPeR once per row.
- 100 steps: 4 epochs x 25 steps, from ``studies/configs/study_100steps.yml`` (the first study).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Rows = list[tuple[str, list[str]]]


@dataclass(frozen=True)
class Table:
    config: str
    budget: list[str]  # overrides appended to every row
    rows: Callable[[], Rows]
    title: str
    test_sets: str = "test"  # the --shared test sets each row is ranked on (common.TEST_SETS)


# ---- the 12-epoch study -------------------------------------------------------------------------------------

STUDY_12 = "studies/configs/study_12epochs.yml"
VALIDATION = ["data.validation_ids=100", "test.datasets=[]"]
# BoT's tricks that suit a short budget, on top of torchreid's settings (the validation table's base)
BOT_SHORT = ["model.last_stride=1", "model.bnneck=true", "train.warmup_epochs=1", "train.schedule=cosine",
             "train.lr=0.00035", "train.channels_last=true"]
# torchreid's settings with the higher-resolution last stage, computed fast (bf16 autocast, channels_last)
FAST_LS1 = ["model.last_stride=1", "train.amp=bf16", "train.channels_last=true"]
GEM_RANDOM_NEGATIVE = ["model.pooling=gem", "loss.triplet.selector=random_negative"]
TORCHREID_CLASSIFIER = ["model.classifier_std=0.01", "model.classifier_bias=true"]
COSFACE = ["loss.cross_entropy.weight=0", "loss.cosface.weight=1"]
LR_1E3_JITTER = ["train.lr=0.001", "data.color_jitter=0.2"]


# The recipe's row name in recipe_val with its former exponential weight average, less the base's
# "torchreid settings + last stride 1, " (the base of the last levers tried).
SHIPPED_ROW = "lr 1e-3 + colour jitter 0.2, oneDNN bf16, weight average 0.998"


def recipe_val_rows() -> Rows:
    """Choosing the recipe on the validation split: BoT's short-budget tricks (BOT_SHORT) on top of torchreid's
    settings, then one lever at a time on top of BOT_SHORT; then, since last stride 1 alone held the gain, one
    lever at a time on top of FAST_LS1. The groups below are in the order they were run; a row's position is
    its --indices number, so new rows go at the end."""
    on_bot_short = [("last stride 2", ["model.last_stride=2"]), ("bf16 autocast", ["train.amp=bf16"])]
    levers = [
        ("GeM pooling", ["model.pooling=gem"]),
        ("semi-hard selector", ["loss.triplet.selector=semihard"]),
        ("random-negative selector", ["loss.triplet.selector=random_negative"]),
        ("CosFace instead of CE", COSFACE),
        ("head lr x10", ["train.head_lr_factor=10"]),
        ("BNNeck, retrieval before it", ["model.bnneck=true", "model.retrieval_feature=features"]),
        ("warmup 1 + cosine", ["train.warmup_epochs=1", "train.schedule=cosine"]),
        ("random erasing 0.5", ["data.random_erasing=0.5"]),
        ("center loss", ["loss.center.weight=0.0005"]),
    ]
    # The levers that each gained a little on FAST_LS1, together.
    together = [("GeM + random-negative", GEM_RANDOM_NEGATIVE),
                ("GeM + random-negative + CosFace instead of CE", GEM_RANDOM_NEGATIVE + COSFACE)]
    # The crop: BoT's pad 10 was set for 256x128 input; at 128x64 it shifts by up to 16% of the width
    # (torchreid's random_crop moves by at most 6%, on half the images). Pad 5 is BoT's scaled to 128x64.
    crop = [("pad 5", ["data.pad=5"]), ("no pad + crop", ["data.pad=0"])]
    # What this loop does differently from torchreid's at the same settings (seeds 0 and 1).
    torchreid_loop = [("Adam beta2 0.99 (torchreid's)", ["train.adam_betas=[0.9,0.99]"]),
                      ("image-balanced sampler (torchreid's)", ["data.balance=image"])]
    # The learning rate: a higher one, or the same one held longer.
    learning_rate = [("lr 6e-4", ["train.lr=0.0006"]), ("lr decay at epoch 10", ["train.milestones=[10]"])]
    # Higher still, lr 6e-4 with GeM, and torchreid's classifier init (std 0.01 and a bias; ours is BoT's 0.001).
    higher_lr = [("lr 1e-3", ["train.lr=0.001"]), ("lr 6e-4 + GeM pooling", ["train.lr=0.0006", "model.pooling=gem"]),
                 ("classifier init std 0.01 + bias (torchreid's)", TORCHREID_CLASSIFIER)]
    top_lr = [("lr 2e-3", ["train.lr=0.002"])]  # where the lr curve tops out
    # Usual cross-domain levers that lr 1e-3 might keep without losing the home domain (which is all this split
    # measures): colour jitter (VIPeR's cameras differ mostly in light and colour) and GeM pooling.
    cross_domain = [("lr 1e-3 + colour jitter 0.2", LR_1E3_JITTER),
                    ("lr 1e-3 + GeM pooling", ["train.lr=0.001", "model.pooling=gem"])]
    # The arithmetic chosen on speed (fp32 with oneDNN's bf16 convolutions): does it cost validation mAP?
    arithmetic = [("lr 1e-3 + colour jitter 0.2, oneDNN bf16 instead of autocast", LR_1E3_JITTER + ONEDNN_BF16)]
    # An exponential moving average of the weights (averaged weights are known to generalise better out of
    # domain, which this split cannot measure): does it hold the home domain?
    average = [(SHIPPED_ROW, LR_1E3_JITTER + ONEDNN_BF16 + WEIGHT_AVERAGE)]
    # The first layers (stem and the two full-resolution stages, features.0-3: 17k of 2.2M parameters) kept at
    # their ImageNet weights, so that a high lr cannot pull the generic low-level filters towards Market's (and
    # their backward pass is skipped); then the same with their BatchNorm statistics adapting to Market.
    frozen = [("lr 1e-3 + colour jitter 0.2, oneDNN bf16, weight average 0.998, features.0-3 frozen",
               LR_1E3_JITTER + ONEDNN_BF16 + WEIGHT_AVERAGE + FREEZE_LOW),
              ("lr 1e-3 + colour jitter 0.2, oneDNN bf16, weight average 0.998, features.0-3 frozen, "
               "their BatchNorm statistics adapting",
               LR_1E3_JITTER + ONEDNN_BF16 + WEIGHT_AVERAGE + FREEZE_LOW + ["model.frozen_batchnorm=false"])]
    # Two levers BoT reports helping across domains as well as within: BNNeck with retrieval after it, and GeM.
    bot_cross_domain = [(f"{SHIPPED_ROW}, {label}", LR_1E3_JITTER + ONEDNN_BF16 + WEIGHT_AVERAGE + change)
                        for label, change in (("BNNeck, retrieval after it", ["model.bnneck=true"]),
                                              ("GeM pooling", ["model.pooling=gem"]))]
    # Twice the colour jitter on the recipe with its uniform weight average.
    stronger_jitter = [("lr 1e-3 + colour jitter 0.4, oneDNN bf16, uniform average of epochs 5-12",
                        LR_1E3_JITTER + ONEDNN_BF16 + UNIFORM_AVERAGE + ["data.color_jitter=0.4"])]
    return [("torchreid settings", []), ("short BoT", BOT_SHORT)] + \
        [(f"short BoT, {label}", BOT_SHORT + change) for label, change in on_bot_short] + \
        [("torchreid settings + last stride 1", FAST_LS1)] + \
        [(f"torchreid settings + last stride 1, {label}", FAST_LS1 + change)
         for label, change in levers + together + crop + torchreid_loop + learning_rate + higher_lr + top_lr
         + cross_domain + arithmetic + average + frozen + bot_cross_domain + stronger_jitter]


# The first layers of MobileNetV2 (stem, 16- and 24-channel stages), kept at their ImageNet weights.
FREEZE_LOW = ["model.frozen_layers=[features.0,features.1,features.2,features.3]"]


# BoT's full trick set on the study's base (the 12-epoch row "full BoT recipe").
FULL_BOT = ["model.last_stride=1", "model.bnneck=true", "train.warmup_epochs=2", "data.random_erasing=0.5",
            "loss.center.weight=0.0005", "train.lr=0.00035", "train.milestones=[8,11]"]


# The recipe chosen on the validation split (its row in recipe_val, run with bf16 autocast).
CHOSEN_ROW = "torchreid settings + last stride 1, lr 1e-3 + colour jitter 0.2"
CHOSEN = FAST_LS1 + LR_1E3_JITTER
# fp32 tensors with oneDNN's bf16 convolutions and matmuls instead of bf16 autocast: the arithmetic the
# recipe's rows were recorded with. On CPUs without AMX oneDNN computes them in fp32 (docs/RESULTS.md).
ONEDNN_BF16 = ["train.amp='off'", "train.fp32_precision=bf16"]
# The shipped config's arithmetic: plain fp32, the same numbers as ONEDNN_BF16 on the CPUs the rows ran on,
# and no instruction-set-dependent rounding on CPUs with AMX (where bf16 was never validated).
FP32 = ["train.amp='off'", "train.fp32_precision=none"]
# An exponential average of the weights (inert at this budget: its ramp averages about the last epoch).
WEIGHT_AVERAGE = ["train.ema_decay=0.998"]
# The mean of the weights at the ends of epochs 5-12 (chosen with studies/weight_average_study.py).
UNIFORM_AVERAGE = ["train.average_epochs=8"]
# config/mobilenet_market_cpu.yml is study_12epochs.yml with exactly these overrides (accuracy.py --check-recipe).
SHIPPED = CHOSEN + FP32 + UNIFORM_AVERAGE
# The recipe's 12-epoch row as it was recorded (before the shipped arithmetic became plain fp32).
RECORDED_RECIPE = CHOSEN + ONEDNN_BF16 + UNIFORM_AVERAGE
# Last stride 1 at torchreid's lr 3e-4: the base of the selector and init rows at 12 epochs.
LS1_LR3 = "last stride 1 recipe at lr 3e-4"


def tables_12_rows() -> Rows:
    """The key rows of the 100-step study's tables at 12 epochs, reported on the devsplit and VIPeR: the
    baselines, BoT's full trick set, last stride 1 at lr 3e-4 with its selectors and its initialisation, and the
    recipe."""
    selectors = [(f"{LS1_LR3}, {name} selector", FAST_LS1 + [f"loss.triplet.selector={name}"])
                 for name in ("random_negative", "semihard", "all")]
    return [("CE baseline", ["loss.triplet.weight=0"]),
            ("+ triplet (torchreid's plain baseline)", []),
            ("full BoT recipe (the former shipped config)", FULL_BOT),
            (LS1_LR3, FAST_LS1),
            (f"{LS1_LR3}, random init", FAST_LS1 + ["model.pretrained=none"])] + selectors + \
        [("chosen recipe (config/mobilenet_market_cpu.yml): last stride 1, lr 1e-3, colour jitter 0.2",
          RECORDED_RECIPE)]


# ---- the 100-step study (the first one) ---------------------------------------------------------------------

STUDY_100 = "studies/configs/study_100steps.yml"
STEPS_100 = ["train.epochs=4", "train.steps_per_epoch=25", "train.eval_every=4", "train.milestones=[3]",
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


def ablation_rows() -> Rows:
    """Table 1: the Bag-of-Tricks ablation, each row adding one trick to the previous one."""
    rows, overrides = [("baseline (CE)", BASELINE)], list(BASELINE)
    for label, change in TRICKS:
        overrides = overrides + change
        rows.append((label, overrides))
    return rows


def full_recipe() -> list[str]:
    return ablation_rows()[-1][1]


def selector_rows() -> Rows:
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


def init_rows() -> Rows:
    """Table 3: ImageNet initialisation vs random initialisation for the full recipe."""
    return [("ImageNet init", full_recipe()), ("random init", full_recipe() + ["model.pretrained=none"])]


# ---- cross-domain validation (issue 30) ------------------------------------------------------------------

# The shipped recipe trained on cameras 1-4 of 401 training ids, ranked on the 100 held-out ids within cameras
# 1-4 (in domain), within cameras 5-6 (a camera shift) and on VIPeR's validation half (another dataset,
# common.TEST_SETS["validation"]); never on a test split. studies/cross_domain_eval.py ranks the levers that
# need no training and applies the decision rule.
SHIPPED_CONFIG = "config/mobilenet_market_cpu.yml"
CROSS_DOMAIN_VAL = ["data.validation_ids=100", "data.validation_cameras=[5,6]", "test.figures=false"]
KEEP_EPOCHS = ["train.checkpoint_keep=12"]  # every epoch's weights, for the weight-average windows


def cross_domain_rows() -> Rows:
    """One lever per row on the shipped recipe (its first row keeps every epoch checkpoint)."""
    return [("shipped recipe", KEEP_EPOCHS),
            ("IBN-a MobileNetV2 (instance norm in blocks 1-6)", ["model.backbone=mobilenet_v2_ibn"]),
            ("random grayscale 0.2", ["data.grayscale=0.2"]),
            ("AugMix-like mixing 0.5", ["data.augmix=0.5"]),
            ("GeM pooling", ["model.pooling=gem"]),
            ("BNNeck, retrieval after it", ["model.bnneck=true"]),
            ("colour jitter 0.4", ["data.color_jitter=0.4"])]


TABLES: dict[str, Table] = {
    "recipe_val": Table(STUDY_12, VALIDATION, recipe_val_rows,
                        "Choosing the recipe on the validation split (12 epochs, 401 training ids, 100 held out)"),
    "study_12": Table(STUDY_12, [], tables_12_rows,
                      "12 epochs: the key rows of Tables 1-3 on the devsplit test split and VIPeR"),
    "ablation": Table(STUDY_100, STEPS_100, ablation_rows,
                      "100 steps, Table 1. Bag of Tricks ablation (each row adds one trick to the row above)"),
    "selectors": Table(STUDY_100, STEPS_100, selector_rows,
                       "100 steps, Table 2. Triplet selection, with and without cross-entropy (full recipe)"),
    "init": Table(STUDY_100, STEPS_100, init_rows,
                  "100 steps, Table 3. ImageNet vs random initialisation (full recipe)"),
    "cross_domain_val": Table(SHIPPED_CONFIG, CROSS_DOMAIN_VAL, cross_domain_rows,
                              "Cross-domain validation: one lever at a time on the shipped recipe", "validation"),
}
