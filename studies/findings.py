"""What docs/RESULTS.md says: the measurement context, the locked recipe, and one section per question, each
one small table of recorded rows (from docs/results/*.jsonl) and one sentence. studies/results_table.py
renders it; the numbers in the tables are always computed from the JSONL files."""

from __future__ import annotations

from dataclasses import dataclass, field

from accuracy_rows import LS1_LR3, SHIPPED_ROW

CURRENT_PAIR = "20261203-175426"  # the comparison of the current recipe with torchreid
LS1 = "torchreid settings + last stride 1"
LR1E3 = f"{LS1}, lr 1e-3"
JITTER = f"{LS1}, lr 1e-3 + colour jitter 0.2"
EMA_RECIPE = f"{LS1}, {SHIPPED_ROW}"
FROZEN = f"{EMA_RECIPE}, features.0-3 frozen"
FINAL = "uniform average of epochs 5-12"  # the recipe's weights, in weight_average.jsonl


@dataclass(frozen=True)
class Row:
    shown: str  # the row's name in the page
    source: str  # the JSONL file (docs/results/<source>.jsonl)
    label: str  # the row's label there
    base: str | None = None  # another row's `shown` to subtract from (default: the table's first row)


@dataclass(frozen=True)
class Question:
    title: str
    sentence: str
    rows: list[Row] = field(default_factory=list)
    kind: str = "rows"  # rows | peers | weight_average | calibration | precision_speed | augment_speed |
    #                     infer_speed | int8_accuracy | osnet_loop
    labels: tuple[tuple[str, str], ...] = ()  # weight-average rows shown, in order: (label there, shown as)


CONTEXT = """Generated from `docs/results/*.jsonl` by `python studies/results_table.py`: edit the JSONL files
(through the study scripts, `studies/README.md`) or `studies/findings.py`, not this page.

**How these were measured.** Every run was made with this code between 29 November and 3 December 2026 on a
2-core AMD EPYC CPU (AVX2, AVX-512 with bf16 and VNNI, no AMX), no GPU, shared with other jobs, torch 2.14.1.
MobileNetV2 from torchvision's ImageNet weights, 128x64 input, P=16 identities x K=4 images per batch, 12 passes
over the training set unless a table says otherwise. **Data:** `market1501-devsplit` holds Market-1501's public
training images (8,642 images of 501 identities for training) with every third identity held out as the test
split (1,076 queries against 3,218 gallery images of 246 identities, Market-1501 protocol); it is not the
official Market-1501 test. **VIPeR** (632 identities, query `cam_a` against gallery `cam_b`) is never seen in
training: it measures cross-domain accuracy. Its identities are split in two fixed halves
(`data/identity_halves.py`): the cross-domain levers were chosen on `viper_val`, and the final comparison with
torchreid reports `viper_test` (316 identities) once. The recipe was chosen on a **validation split** carved from the
training identities (`data.validation_ids=100`: train on 401, rank the other 100; 431 queries against 1,256
images), never on the test split. Rank-1 (R1) and mAP in %; several seeds give the mean and, in brackets, the
range. One seed's noise is 1-2 mAP: the thread count alone changes floating-point sums (the study rows ran two
at a time with one thread each, the peer pairs with two threads) and moved the same run by 2.2 devsplit and 1.0
VIPeR mAP; a change is adopted only when its gain exceeds that."""

RECIPE = f"""`config/mobilenet_market_cpu.yml` is torchreid's plain baseline (cross-entropy with label smoothing 0.1
+ batch-hard triplet, margin 0.3; Adam, weight decay 5e-4; flip + pad 10 and crop; 12 epochs, lr x0.1 after
epoch 8; `studies/configs/study_12epochs.yml`) with, each from the section named:

- last stride 1 ([BoT's tricks at 12 epochs](#which-of-bots-tricks-help-in-12-epochs));
- lr 1e-3 instead of 3e-4 ([the learning rate](#which-learning-rate));
- colour jitter 0.2 ([cross-domain levers](#which-cross-domain-levers-hold-the-home-domain));
- the mean of the weights at the ends of epochs 5-12 ([weight averages](#which-span-should-a-weight-average-cover));
- fp32 and channels_last ([arithmetic](#which-arithmetic-trains-fastest-on-a-cpu)); the rows were recorded
  with `train.fp32_precision: bf16`, which oneDNN computes in fp32 on CPUs without AMX, like this one.

`python studies/accuracy.py --check-recipe config/mobilenet_market_cpu.yml` checks that the file is exactly that
(a test runs it). Against torchreid 0.2.5 trained on the same data, input, batch and epochs in the same run
(pair {CURRENT_PAIR}: `studies/peer_torchreid.py --test-sets test_half --seeds 0 1 2 --equal-wall`; both
scored by this project's evaluator on the devsplit test split and VIPeR's test half, three seeds each; the target
was +5 devsplit and +2 VIPeR mAP with our lowest seed above torchreid's highest):"""

QUESTIONS = [
    Question("Which of BoT's tricks help in 12 epochs?",
             "Last stride 1 alone holds the gain, about +7 validation mAP; BoT's other short-budget tricks "
             "(BNNeck, warmup 1 + cosine, lr 3.5e-4) take it back, and cost 4.8 without last stride 1.",
             [Row("torchreid's settings", "recipe_val", "torchreid settings"),
              Row("short BoT: last stride 1, BNNeck, warmup 1 + cosine, lr 3.5e-4", "recipe_val", "short BoT"),
              Row("short BoT with last stride 2", "recipe_val", "short BoT, last stride 2"),
              Row("last stride 1 alone", "recipe_val", LS1)]),
    Question("What else helps on top of last stride 1?",
             "No single lever beats last stride 1 by more than one seed's noise; semi-hard negatives, warmup + "
             "cosine, a 10x head lr, BNNeck with retrieval before it and no pad + crop cost 2 to 10.",
             [Row("last stride 1 (batch-hard, avg pooling, pad 10)", "recipe_val", LS1)]
             + [Row(change, "recipe_val", f"{LS1}, {change}") for change in (
                 "GeM pooling", "random-negative selector", "CosFace instead of CE", "GeM + random-negative",
                 "pad 5", "random erasing 0.5", "center loss", "BNNeck, retrieval before it", "no pad + crop",
                 "warmup 1 + cosine", "head lr x10", "semi-hard selector")]),
    Question("Which learning rate?",
             "Validation mAP tops out near lr 1e-3, +1.7 over 3e-4 with the two seeds' ranges apart; the "
             "recipe uses it (torchreid keeps its own 3e-4).",
             [Row("lr 3e-4", "recipe_val", LS1), Row("lr 6e-4", "recipe_val", f"{LS1}, lr 6e-4"),
              Row("lr 1e-3", "recipe_val", LR1E3), Row("lr 2e-3", "recipe_val", f"{LS1}, lr 2e-3"),
              Row("lr 3e-4, decay at epoch 10 instead of 8", "recipe_val", f"{LS1}, lr decay at epoch 10")]),
    Question("Which cross-domain levers hold the home domain?",
             "Colour jitter 0.2 and GeM pooling each hold the validation mAP at lr 1e-3, and the recipe keeps "
             "colour jitter (VIPeR's cameras differ mostly in light and colour: a prior the split cannot test); "
             "on the recipe, BNNeck with retrieval after it, GeM and colour jitter 0.4 each cost 1.4 to 2.9.",
             [Row("lr 1e-3", "recipe_val", LR1E3),
              Row("+ colour jitter 0.2", "recipe_val", JITTER),
              Row("+ GeM pooling", "recipe_val", f"{LR1E3} + GeM pooling"),
              Row("recipe with its former exponential average", "recipe_val", EMA_RECIPE),
              Row("... + BNNeck, retrieval after it", "recipe_val", f"{EMA_RECIPE}, BNNeck, retrieval after it",
                  "recipe with its former exponential average"),
              Row("... + GeM pooling", "recipe_val", f"{EMA_RECIPE}, GeM pooling",
                  "recipe with its former exponential average"),
              Row("the recipe (average of epochs 5-12)", "weight_average", FINAL, "lr 1e-3"),
              Row("the recipe with colour jitter 0.4", "recipe_val",
                  f"{LS1}, lr 1e-3 + colour jitter 0.4, oneDNN bf16, uniform average of epochs 5-12",
                  "the recipe (average of epochs 5-12)")]),
    Question("Which levers help on unseen cameras?",
             "Chosen without a test set (`studies/cross_domain_eval.py`): each row trains on cameras 1-4 of 401 "
             "devsplit identities and ranks the 100 held-out identities within cameras 1-4 (validation), within "
             "cameras 5-6 (a camera shift) and VIPeR's validation half (the other half is kept for the final "
             "test). The rule, set before the runs: keep a lever whose mean of the two cross-domain mAPs over "
             "seeds 0 and 1 passes the recipe's best seed (33.5) at a cost of at most 0.5 validation mAP. No "
             "trained lever passes: IBN-a trades VIPeR for the camera shift (-4.6 and +1.9), GeM and AugMix "
             "cost 1.9-3.0 in domain for no cross-domain gain, and grayscale and BNNeck lost more at seed 0 "
             "(no second seed). Flip at test passes (+0.8 cross-domain, +1.4 in domain) but only the evaluator "
             "applies it, not `extract`, the `Embedder` or the exports; averaging all twelve epochs gains 2.0 on "
             "the camera shift for 1.0 in domain, over the bound. The recipe is unchanged: flip stays the evaluation "
             "switch `test.flip` (off), because it would double the cost of every embedding a tracker or a "
             "gallery makes and `calibrate` sets the threshold on unflipped features.",
             [Row("the recipe", "cross_domain_val", "shipped recipe"),
              Row("flip at test (evaluation only)", "cross_domain_ranked", "flip at test"),
              Row("mean of epochs 1-12 instead of 5-12", "cross_domain_ranked", "uniform average of epochs 1-12"),
              Row("mean of epochs 9-12", "cross_domain_ranked", "uniform average of epochs 9-12"),
              Row("epoch 12's weights, no average", "cross_domain_ranked", "no weight average (epoch 12's weights)"),
              Row("IBN-a MobileNetV2 (instance norm in blocks 1-6)", "cross_domain_val",
                  "IBN-a MobileNetV2 (instance norm in blocks 1-6)"),
              Row("AugMix-like mixing 0.5", "cross_domain_val", "AugMix-like mixing 0.5"),
              Row("random grayscale 0.2", "cross_domain_val", "random grayscale 0.2"),
              Row("GeM pooling", "cross_domain_val", "GeM pooling"),
              Row("BNNeck, retrieval after it", "cross_domain_val", "BNNeck, retrieval after it"),
              Row("BNNeck, retrieval before it", "cross_domain_ranked", "BNNeck, retrieval before it")]),
    Question("Which span should a weight average cover?",
             "The mean of the weights at the ends of epochs 5-12 (four at lr 1e-3, four after the step to 1e-4) "
             "gains 1.1-1.4 validation mAP over the trained weights at both seeds, on the same trainings; windows "
             "after the lr step, and the exponential average (its ramp covers about the last epoch), gain "
             "nothing; recomputing BatchNorm statistics changes little.",
             kind="weight_average",
             labels=(("trained, last epoch", "the trained weights at the end"),
                     ("run average", "the run's exponential average (decay 0.998)"),
                     *((f"uniform average of epochs {w}", f"mean of epochs {w}") for w in ("9-12", "8-12", "7-12")),
                     (FINAL, "mean of epochs 5-12 (the recipe)"),
                     (f"{FINAL}, BN recomputed", "mean of epochs 5-12, BatchNorm statistics recomputed"),
                     ("uniform average of epochs 1-12", "mean of epochs 1-12"))),
    Question("Should the first layers stay frozen?",
             "Keeping MobileNetV2's stem and first two stages at their ImageNet weights costs about 1.8 "
             "validation mAP whether their BatchNorm statistics adapt or not, so they train.",
             [Row("recipe with its former exponential average", "recipe_val", EMA_RECIPE),
              Row("features.0-3 frozen", "recipe_val", FROZEN),
              Row("features.0-3 frozen, their BatchNorm statistics adapting", "recipe_val",
                  f"{FROZEN}, their BatchNorm statistics adapting")]),
    Question("Does this training loop differ from torchreid's?",
             "None of the differences from torchreid's own loop gains on the validation split: not Adam's beta2, "
             "not its classifier init, not a smaller crop shift, and its image-balanced sampler loses 1.6 "
             "(the identity balance's extra steps beat seeing more distinct images).",
             [Row("last stride 1 (Adam beta2 0.999, identity-balanced, BoT's init, pad 10)", "recipe_val", LS1)]
             + [Row(change, "recipe_val", f"{LS1}, {change}") for change in (
                 "Adam beta2 0.99 (torchreid's)", "image-balanced sampler (torchreid's)",
                 "classifier init std 0.01 + bias (torchreid's)", "pad 5")]),
    Question("Which triplet selector?",
             "At 12 epochs batch-hard, random-negative and batch-all are level within the noise and semi-hard "
             "falls 14 devsplit mAP behind, although at 100 steps it was the best: easy negatives help a model "
             "that knows nothing and starve one that has learned.",
             [Row(f"batch-hard ({LS1_LR3})", "study_12", LS1_LR3)]
             + [Row(name, "study_12", f"{LS1_LR3}, {name} selector") for name in ("random_negative", "all",
                                                                                 "semihard")]),
    Question("What do the triplet term, BoT's tricks and ImageNet weights add?",
             "At 12 epochs cross-entropy alone is as good in domain as torchreid's CE + triplet baseline (the "
             "triplet adds about 1 VIPeR mAP), BoT's full trick set is 2.5 under it, last stride 1 is 4 over "
             "it, and from random weights nothing is learned at this budget.",
             [Row("cross-entropy only", "study_12", "CE baseline"),
              Row("+ batch-hard triplet: torchreid's plain baseline", "study_12",
                  "+ triplet (torchreid's plain baseline)"),
              Row("full BoT (last stride 1, BNNeck, warmup, random erasing, center loss)", "study_12",
                  "full BoT recipe (the former shipped config)"),
              Row("last stride 1, lr 3e-4", "study_12", LS1_LR3),
              Row("last stride 1, lr 3e-4, random init", "study_12", f"{LS1_LR3}, random init")]),
    Question("Which arithmetic trains fastest on a CPU?",
             "None measurably here. On this CPU (AVX512-BF16, no AMX) oneDNN keeps `train.fp32_precision: "
             "bf16`'s convolutions and matmuls in fp32 (outputs equal fp32's within 3e-6): the oneDNN bf16 row is "
             "the same arithmetic as the fp32 channels_last row, so the gaps between the recipe model's rows (up to "
             "13 %) are the machine's drift. So the recipe now ships plain fp32 (`train.fp32_precision: none`; "
             "the row marked shipped is the former setting): the same numbers here, and no "
             "bf16 rounding, never validated, on CPUs with AMX.",
             kind="precision_speed"),
    Question("What does batched augmentation save?",
             "Colour jitter, normalisation and random erasing applied to the whole batch in the loader workers "
             "take 2.3x less CPU per batch than torchvision's per-image pipeline (decoding excluded).",
             kind="augment_speed"),
    Question("How fast does a model run on a CPU?",
             "On two quiet cores INT8 is the fast path: OpenVINO INT8 runs ResNet-50 11.7x and MobileNetV2 6.5x "
             "as fast as PyTorch eager at batch 32 (ONNX INT8 10.7x and 5.6x), within 1 mAP of fp32 (next "
             "section); OSNet x0.25 (random weights) is the exception: ONNX fp32 5.7x, ONNX INT8 only "
             "3.1x, OpenVINO INT8 8.5x. In fp32, ONNX and OpenVINO reach 3.0-3.1x for ResNet-50 but 2.6-2.7x for "
             "MobileNetV2, "
             "and the PyTorch copy `extract` runs (BatchNorm folded, channels_last) 1.8x and 2.6x with features "
             "within 1e-7. At batch 1, MobileNetV2 with OpenVINO INT8 answers in 0.9 ms at p99: over 1,000 crops/s "
             "one at a time, against the 600 a tracker with 20 people at 30 frames/s needs. End to end, `extract` "
             "keeps 0.9-1.3x of the model-only speed for ResNet-50 but only 0.5-0.8x for MobileNetV2, where "
             "decoding and resizing the JPEGs cap it near 1,700 crops/s. Two cautions: ResNet-50 eager slows "
             "from 26 crops/s at batch 8 to 15 at batch 32, which flatters every ratio at 32 (at batch 8 the fp32 "
             "exports are 1.7-1.8x, the INT8 ones 6.3-6.8x); and shares of the matmul's GFLOP/s above 100 % mean "
             "fewer multiplications than a direct convolution (INT8, or the runtime's own convolution "
             "algorithms), not more than the machine's peak.",
             kind="infer_speed"),
    Question("What does INT8 cost in accuracy?",
             "Quantized after training (static, per-channel int8 weights, activation ranges from 300 devsplit "
             "training crops), the CPU recipe's MobileNetV2 loses under 1 mAP point on both test sets with either "
             "engine, inside `export --int8`'s default bound of 1.0.",
             kind="int8_accuracy"),
    Question("Does OSNet train here from random init?",
             "From random weights OSNet x0.25 learns almost nothing in the recipe's 12 epochs (validation mAP "
             "3.1; its cross-entropy stays at ln 401, the loss of a uniform guess), as MobileNetV2 from random "
             "weights does (0.5 devsplit mAP, above), against about 77 for the recipe's MobileNetV2 from "
             "ImageNet ([weight averages](#which-span-should-a-weight-average-cover)): start OSNet from trained "
             "weights (an imported torchreid model as `model.pretrained`). (One thread, load average 8-9; "
             "osnet_x1_0, about four times the compute, was not run to the end.)",
             kind="osnet_loop"),
    Question("Does a threshold transfer across domains?",
             "A threshold calibrated on the devsplit at a false-positive rate of 0.1 % lets through 0.6-0.9 % "
             "of VIPeR's different-person pairs and, in open-set search, lets a third of absent people match "
             "someone: calibrate on the camera network where it is used. (Both models are of the last stride "
             "1 recipe at lr 3e-4.)",
             kind="calibration"),
    Question("What happens in the first 100 steps?",
             "In a 100-step run (4 x 25 steps, `studies/configs/study_100steps.yml`; each row adds one trick to "
             "the row above) the triplet term is the whole gain, cross-entropy alone has not started to learn, "
             "and random erasing hurts; random weights learn nothing.",
             [Row("cross-entropy only", "ablation", "baseline (CE)")]
             + [Row(label, "ablation", label) for label in (
                 "+ triplet", "+ warmup", "+ random erasing", "+ label smoothing", "+ last stride 1", "+ BNNeck",
                 "+ center loss")]
             + [Row("full recipe, random init", "init", "random init", "+ center loss")]),
    Question("Which triplet selector in the first 100 steps?",
             "Early in training semi-hard and random negatives are about twice as good as batch-hard, and "
             "cross-entropy adds little on top of a good selector.",
             [Row(f"{name} {extra}", "selectors", f"{name} {extra}", None if name == "hardest" and extra == "+ CE"
                  else "hardest + CE")
              for name in ("hardest", "random_negative", "semihard", "all") for extra in ("+ CE", "only")]),
]

FIGURES = """Ranking grids (each query's top 10: green the same person, red another) and t-SNE maps of the last
stride 1 model at lr 3e-4 (devsplit mAP 61.0, VIPeR 24.8): [devsplit ranking](figures/devsplit_ranking.png),
[devsplit t-SNE](figures/devsplit_tsne.png), [VIPeR ranking](figures/viper_ranking.png),
[VIPeR t-SNE](figures/viper_tsne.png); its training on the validation split:
[curves](figures/recipe_curves.png). The 100-step run's curves: [curves](figures/full_recipe_curves.png), and
valid triplets per step for each selector: [selectors](figures/selector_valid_triplets.png)."""

