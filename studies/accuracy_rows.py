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


# The shipped recipe's row name in recipe_val (round 11), less the base's "torchreid settings + last stride 1, ".
SHIPPED_ROW = "lr 1e-3 + colour jitter 0.2, oneDNN bf16, weight average 0.998"


def recipe_val_rows() -> Rows:
    """Choosing the recipe on the validation split. Round 1: BoT's short-budget tricks (BOT_SHORT) on top of
    torchreid's settings, then one lever at a time on top of BOT_SHORT. Round 2 (after round 1 showed that
    last stride 1 helps while the rest of BOT_SHORT does not): one lever at a time on top of FAST_LS1."""
    round1 = [("last stride 2", ["model.last_stride=2"]), ("bf16 autocast", ["train.amp=bf16"])]
    round2 = [
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
    # Round 3: the levers that each gained on FAST_LS1 (GeM, random-negative selection, CosFace), together.
    round3 = [("GeM + random-negative", GEM_RANDOM_NEGATIVE),
              ("GeM + random-negative + CosFace instead of CE", GEM_RANDOM_NEGATIVE + COSFACE)]
    # Round 4: the crop. BoT's pad 10 was set for 256x128 input; at 128x64 it shifts by up to 16% of the
    # width (torchreid's random_crop moves by at most 6%, on half the images). Pad 5 is BoT's scaled to 128x64.
    round4 = [("pad 5", ["data.pad=5"]), ("no pad + crop", ["data.pad=0"])]
    # Round 5: what our loop does differently from torchreid's at the same settings (our loop sat 1.2-2.0 mAP
    # under torchreid's on the devsplit), one at a time on the recipe; run at seeds 0 and 1, with the recipe's row.
    round5 = [("Adam beta2 0.99 (torchreid's)", ["train.adam_betas=[0.9,0.99]"]),
              ("image-balanced sampler (torchreid's)", ["data.balance=image"])]
    # Round 6: the learning rate. Warmup 1 + cosine (a lower mean lr over the first 8 epochs) cost 4.4: does a
    # higher or longer-held lr gain?
    round6 = [("lr 6e-4", ["train.lr=0.0006"]), ("lr decay at epoch 10", ["train.milestones=[10]"])]
    # Round 7: lr 6e-4 gained 1.1 over two seeds (ranges touching): a higher lr still, and lr 6e-4 with GeM;
    # and the last loop difference from torchreid: its classifier init (std 0.01 and a bias; ours was BoT's 0.001).
    round7 = [("lr 1e-3", ["train.lr=0.001"]), ("lr 6e-4 + GeM pooling", ["train.lr=0.0006", "model.pooling=gem"]),
              ("classifier init std 0.01 + bias (torchreid's)", TORCHREID_CLASSIFIER)]
    # Round 8: lr 1e-3 gave 78.2 at seed 0 (+2.3): where the lr curve tops out.
    round8 = [("lr 2e-3", ["train.lr=0.002"])]
    # Round 9: lr 1e-3 (adopted in round 8) cost 1.2 VIPeR mAP in the peer pair. The split measures the home
    # domain only, so this round asks which usual cross-domain levers lr 1e-3 can take without losing there:
    # colour jitter (VIPeR's cameras differ mostly in light and colour) and GeM pooling.
    round9 = [("lr 1e-3 + colour jitter 0.2", LR_1E3_JITTER),
              ("lr 1e-3 + GeM pooling", ["train.lr=0.001", "model.pooling=gem"])]
    # Round 10: the shipped arithmetic (fp32 with oneDNN's bf16 convolutions, chosen on speed after round 9)
    # on the chosen row: does it cost validation mAP against bf16 autocast?
    round10 = [("lr 1e-3 + colour jitter 0.2, oneDNN bf16 instead of autocast", LR_1E3_JITTER + ONEDNN_BF16)]
    # Round 11: an exponential moving average of the weights (train.ema_decay; averaged weights are known to
    # generalise better out of domain, which this split cannot measure): does it hold the home domain?
    round11 = [(SHIPPED_ROW,
                LR_1E3_JITTER + ONEDNN_BF16 + WEIGHT_AVERAGE)]
    # Round 12: freeze the first layers (stem and the two full-resolution stages, features.0-3: 17k of 2.2M
    # parameters) at their ImageNet weights. lr 1e-3 gained the home domain and cost VIPeR against 3e-4, as if
    # the larger steps moved the generic low-level filters towards Market's; frozen, they cannot move, and
    # their backward pass (about a fifth of a step's time) is skipped. Does it hold the home domain?
    round12 = [("lr 1e-3 + colour jitter 0.2, oneDNN bf16, weight average 0.998, features.0-3 frozen",
                LR_1E3_JITTER + ONEDNN_BF16 + WEIGHT_AVERAGE + FREEZE_LOW)]
    # Round 13: frozen, those layers cost 1.9 validation mAP (75.7 / 75.2 against 78.1 / 76.6). Their BatchNorms
    # kept ImageNet's statistics; let them adapt to Market's (the weights stay frozen, the speed gain stays).
    round13 = [("lr 1e-3 + colour jitter 0.2, oneDNN bf16, weight average 0.998, features.0-3 frozen, "
                "their BatchNorm statistics adapting",
                LR_1E3_JITTER + ONEDNN_BF16 + WEIGHT_AVERAGE + FREEZE_LOW + ["model.frozen_batchnorm=false"])]
    # Round 14: frozen low layers cost 1.7 with adapting statistics too (75.7 / 75.6), so neither is adopted. Two
    # levers BoT reports helping across domains as well as within, on the shipped recipe: BNNeck with retrieval
    # after it (BoT's; round 2 measured only retrieval before it) and GeM pooling (held at lr 1e-3 in round 9).
    round14 = [(f"{SHIPPED_ROW}, {label}", LR_1E3_JITTER + ONEDNN_BF16 + WEIGHT_AVERAGE + change)
               for label, change in (("BNNeck, retrieval after it", ["model.bnneck=true"]),
                                     ("GeM pooling", ["model.pooling=gem"]))]
    # Round 16: the shipped recipe (round 15's uniform average of epochs 5-12) still misses the VIPeR target by
    # 0.3 mAP. VIPeR's two cameras differ mostly in light and colour, and colour jitter 0.2 held the home
    # domain in round 9: does twice the strength hold it too?
    round16 = [("lr 1e-3 + colour jitter 0.4, oneDNN bf16, uniform average of epochs 5-12",
                LR_1E3_JITTER + ONEDNN_BF16 + UNIFORM_AVERAGE + ["data.color_jitter=0.4"])]
    return [("torchreid settings", []), ("short BoT", BOT_SHORT)] + \
        [(f"short BoT, {label}", BOT_SHORT + change) for label, change in round1] + \
        [("torchreid settings + last stride 1", FAST_LS1)] + \
        [(f"torchreid settings + last stride 1, {label}", FAST_LS1 + change)
         for label, change in round2 + round3 + round4 + round5 + round6 + round7 + round8 + round9
                                   + round10 + round11 + round12 + round13
                                   + round14 + round16]


# The first layers of MobileNetV2 (stem, 16- and 24-channel stages), kept at their ImageNet weights.
FREEZE_LOW = ["model.frozen_layers=[features.0,features.1,features.2,features.3]"]


# The recipe BoT's tricks made of the shipped MobileNetV2 config before this study (its 12-epoch row of the peer
# comparison: devsplit mAP 54.3 against torchreid's 58.4), on the study's base.
FULL_BOT = ["model.last_stride=1", "model.bnneck=true", "train.warmup_epochs=2", "data.random_erasing=0.5",
            "loss.center.weight=0.0005", "train.lr=0.00035", "train.milestones=[8,11]"]


# The recipe chosen on the validation split (its row in recipe_val, run with bf16 autocast).
CHOSEN_ROW = "torchreid settings + last stride 1, lr 1e-3 + colour jitter 0.2"
CHOSEN = FAST_LS1 + LR_1E3_JITTER
# The shipped config's arithmetic, chosen on measured speed after the validation rounds (not a validation row):
# fp32 tensors with oneDNN's bf16 convolutions and matmuls instead of bf16 autocast. Same run, same 2 cores,
# 1 Dec 2026, one training step of the recipe's model against torchreid's: 1.09-1.18x with this, 1.00-1.11x
# with bf16 autocast, 0.99-1.04x in plain fp32 (docs/RESULTS.md, "Speed").
ONEDNN_BF16 = ["train.amp='off'", "train.fp32_precision=bf16"]
# The exponential weight average of validation round 11 (78.1 / 76.6 against 78.1 / 76.5 without; inert: its
# ramp averages about the last epoch), shipped until round 15.
WEIGHT_AVERAGE = ["train.ema_decay=0.998"]
# Round 15 (studies/weight_average_study.py on round 11's runs): the mean of the weights at the ends of epochs
# 5-12 instead, 79.2 / 77.9 against 78.1 / 76.6.
UNIFORM_AVERAGE = ["train.average_epochs=8"]
# config/mobilenet_market_cpu.yml is study_12epochs.yml with exactly these overrides (tests/test_config.py).
SHIPPED = CHOSEN + ONEDNN_BF16 + UNIFORM_AVERAGE
# The recipe chosen in round 2 (shipped until round 8): the base of the selector and init rows at 12 epochs.
LS1_LR3 = "last stride 1 recipe at lr 3e-4"


def tables_12_rows() -> Rows:
    """The key rows of the first study's Tables 1-3, at 12 epochs, reported on the devsplit and VIPeR: the
    baselines, the former recipe, the recipe chosen in round 2 (last stride 1 at lr 3e-4) with its selectors and
    its initialisation, and the one chosen in round 8 (lr 1e-3)."""
    selectors = [(f"{LS1_LR3}, {name} selector", FAST_LS1 + [f"loss.triplet.selector={name}"])
                 for name in ("random_negative", "semihard", "all")]
    return [("CE baseline", ["loss.triplet.weight=0"]),
            ("+ triplet (torchreid's plain baseline)", []),
            ("full BoT recipe (the former shipped config)", FULL_BOT),
            (LS1_LR3, FAST_LS1),
            (f"{LS1_LR3}, random init", FAST_LS1 + ["model.pretrained=none"])] + selectors + \
        [("chosen recipe (config/mobilenet_market_cpu.yml): last stride 1, lr 1e-3, colour jitter 0.2", SHIPPED)]


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
}
