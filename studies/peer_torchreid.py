"""Side by side: torchreid 0.2.5 and trytry-reid trained on the same data, init, input size, batch and epochs,
on the same machine in the same run, both models scored by trytry-reid's evaluator.

    bash benchmarks/setup_peers.sh        # torchreid 0.2.5 into .bench-peers/ (--no-deps; not a dependency)
    .venv/bin/python studies/peer_torchreid.py --config config/mobilenet_market_cpu.yml --seeds 0 1
    .venv/bin/python studies/peer_torchreid.py ... --equal-wall   # + ours trained for torchreid's wall time
    .venv/bin/python studies/peer_torchreid.py --config C --equal-wall-of 20261202-031856   # that run alone,
                                                   # timed from a recorded pair (schedule and average scaled)
    .venv/bin/python studies/peer_torchreid.py --config C train.epochs=4 'train.milestones=[3]' --seeds 0
                                                   # overrides (both systems) go before --seeds
    .venv/bin/python studies/peer_torchreid.py --config config/mobilenet_market_cpu.yml --test-sets test_half \
        --seeds 0 1 2 --equal-wall                 # the devsplit test split and VIPeR's test half, the half no
                                                   # recipe was chosen on (data/identity_halves.py)

What both systems get, from the project config with the training data, the ImageNet weights and the test sets
(devsplit and VIPeR) of ``--shared`` passed as overrides before the command line's own (only the command
line's are recorded): the training records of ``data.name``/``data.root``, the ``height`` x ``width`` input,
``batch_p`` identities x ``batch_k`` images per batch, ``train.epochs`` passes over the training set,
``data.workers`` loader processes, the ImageNet MobileNetV2 of ``model.pretrained``, and the same torch thread
count. torchreid runs its own plain baseline: ``ImageTripletEngine`` (cross-entropy with
label smoothing + batch-hard triplet, margin 0.3, weights 1 and 1), Adam lr 3e-4 with weight decay 5e-4, one
step decay (x0.1) after 2/3 of the epochs, ``RandomIdentitySampler``, transforms ``random_flip`` +
``random_crop``. Only its backbone wrapper is ours: torchreid's model contract (training: ``(logits,
features)``; eval: ``features``) around torchvision's MobileNetV2 trunk holding the same weights (torchreid's
own MobileNetV2 names its layers differently, so those weights cannot load into it), global average pooling
and a linear classifier. Training speed is images over the wall time of the training epochs (evaluation
excluded) for both. Both models are then ranked by ``retrieval.evaluate_model`` (the config's test transform,
``test.metric``, Market protocol) on the config's test sets. One JSON line per system and seed is appended
to ``docs/results/peers.jsonl``; ``studies/results_table.py`` turns it into RESULTS.md's table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trytry_reid.data.images import relabel
from trytry_reid.evaluation.retrieval import evaluate_model
from trytry_reid.jobs import builders
from trytry_reid.jobs.config import Config, load_config
from trytry_reid.jobs.train import run_train
from trytry_reid.models.backbones import build_backbone

from common import RESULTS as RESULTS_FOLDER
from common import ROOT, TEST_SETS, add_shared_argument, read_lines, shared_overrides

sys.path.insert(1, str(ROOT / ".bench-peers"))  # benchmarks/setup_peers.sh installs torchreid there
RESULTS = RESULTS_FOLDER / "peers.jsonl"
DATASET_NUMBERS = itertools.count()
TORCHREID = "torchreid 0.2.5"
OURS = "trytry-reid"


def import_torchreid():
    try:
        import torchreid
    except ImportError as error:
        raise SystemExit(f"torchreid is not installed: run `bash benchmarks/setup_peers.sh` ({error})")
    return torchreid


class TorchreidMobileNetV2(nn.Module):
    """torchreid's model contract around torchvision's MobileNetV2 trunk (the shared weights)."""

    def __init__(self, num_classes: int, weights: str) -> None:
        super().__init__()
        self.features, dim = build_backbone("mobilenet_v2", last_stride=2, pretrained=weights)
        self.classifier = nn.Linear(dim, num_classes)
        nn.init.normal_(self.classifier.weight, 0, 0.01)  # torchreid's init of its linear layers
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor):
        v = self.features(x).mean(dim=(2, 3))
        return v if not self.training else (self.classifier(v), v)


class Embedding(nn.Module):
    """Exposes a torchreid model's eval-mode feature as ``embed`` (L2-normalised), as evaluate_model expects."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


def torchreid_datamanager(torchreid, config: Config, train_records):
    """An ImageDataManager over the project's training records (pids relabelled 0..N-1, as torchreid needs)."""
    labels, _ = relabel(train_records)
    train = [(r.path, label, r.camid) for r, label in zip(train_records, labels)]

    class ProjectRecords(torchreid.reid.data.ImageDataset):
        def __init__(self, **kwargs):
            super().__init__(train, train[:2], train[2:4], **kwargs)  # its own test loaders stay unused

    name = f"trytry_records_{next(DATASET_NUMBERS)}"  # torchreid refuses to register a name twice
    torchreid.reid.data.register_image_dataset(name, ProjectRecords)
    d = config.data
    return torchreid.reid.data.ImageDataManager(
        root="", sources=name, height=d.height, width=d.width,
        transforms=["random_flip", "random_crop"], norm_mean=list(d.mean), norm_std=list(d.std), use_gpu=False,
        batch_size_train=d.batch_p * d.batch_k, num_instances=d.batch_k, train_sampler="RandomIdentitySampler",
        workers=d.workers)


def train_torchreid(config: Config, seed: int) -> tuple[nn.Module, dict]:
    torchreid = import_torchreid()
    torchreid.reid.utils.set_random_seed(seed)
    splits = builders.build_train_splits(config)
    manager = torchreid_datamanager(torchreid, config, builders.checked_train_records(config, splits))
    model = TorchreidMobileNetV2(manager.num_train_pids, config.model.pretrained)
    optimizer = torchreid.reid.optim.build_optimizer(model, optim="adam", lr=3e-4)
    epochs = config.train.epochs
    scheduler = torchreid.reid.optim.build_lr_scheduler(optimizer, lr_scheduler="single_step",
                                                        stepsize=max(1, round(2 * epochs / 3)))
    engine = torchreid.reid.engine.ImageTripletEngine(manager, model, optimizer, margin=0.3, weight_t=1,
                                                      weight_x=1, scheduler=scheduler, use_gpu=False,
                                                      label_smooth=True)
    engine.max_epoch = epochs
    start = time.perf_counter()
    for epoch in range(epochs):
        engine.epoch = epoch
        engine.train(print_freq=50)
    train_s = time.perf_counter() - start
    steps = len(manager.train_loader)
    images = epochs * steps * config.data.batch_p * config.data.batch_k
    return model, {"epochs": epochs, "steps_per_epoch": steps, "train_s": round(train_s, 1),
                   "images_per_s": round(images / train_s, 1)}


def score(model: nn.Module, config: Config) -> dict[str, dict[str, float]]:
    """The project's evaluation of any model exposing ``embed``: every configured test set, ranked with the
    same options a trytry-reid run uses (``builders.retrieval_options``)."""
    transform, options = builders.test_transform(config), builders.retrieval_options(config, "cpu")
    return {label: evaluate_model(model, label, s.query, s.gallery, transform, **options).summary()
            for label, s in builders.build_test_sets(config, None)}


def run_torchreid(config: Config, seed: int) -> dict:
    start = time.perf_counter()
    model, speed = train_torchreid(config, seed)
    metrics = score(Embedding(model).eval(), config)
    return {**speed, "wall_s": round(time.perf_counter() - start, 1), "metrics": metrics}


def run_ours(config: Config, out: Path) -> dict:
    start = time.perf_counter()
    summary = run_train(config, overwrite=True)
    steps = summary["train_images"] // (config.train.epochs * config.data.batch_p * config.data.batch_k)
    return {"epochs": config.train.epochs, "steps_per_epoch": steps, "train_s": summary["train_s"],
            "images_per_s": summary["images_per_s"], "wall_s": round(time.perf_counter() - start, 1),
            "metrics": summary["metrics"], "run_dir": str(out.relative_to(ROOT))}


def ours_config(args, seed: int, out: Path, epochs: int | None = None) -> Config:
    """The project config for one seed; with ``epochs``, a longer run whose schedule (warmup, milestones)
    keeps its proportions."""
    extra = [f"train.seed={seed}", f"output_dir={out}", "test.figures=false", "train.steps_per_epoch=null"]
    config = load_config(args.config, [*args.inputs, *args.overrides, *extra])
    if epochs is None:
        return config
    t = config.train
    milestones = [round(m * epochs / t.epochs) for m in t.milestones]
    return load_config(args.config, [*args.inputs, *args.overrides, *extra, f"train.epochs={epochs}",
                                     f"train.milestones={milestones}",
                                     f"train.warmup_epochs={round(t.warmup_epochs * epochs / t.epochs)}",
                                     f"train.average_epochs={round(t.average_epochs * epochs / t.epochs)}"])


def record(system: str, label: str, pair: str, seed: int, args, result: dict) -> dict:
    line = {"system": system, "label": label, "pair": pair, "seed": seed, "config": str(args.config),
            "overrides": args.overrides, "threads": torch.get_num_threads(), "cpu": platform.processor() or
            platform.machine(), "date": datetime.now().isoformat(timespec="seconds"), **result}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    print(f"[peers] {system} ({label}) seed {seed}: {json.dumps(result)}", flush=True)
    return line


def run_pair(args, seed: int, pair: str) -> tuple[dict, dict]:
    """Both systems on one seed; the order alternates with the seed so drift in machine load evens out."""
    out = ROOT / "runs" / "peers" / pair / f"ours-seed{seed}"
    ours_first = seed % 2 == 1
    results = {}
    for system in ([OURS, TORCHREID] if ours_first else [TORCHREID, OURS]):
        if system == OURS:
            results[system] = record(OURS, "same epochs", pair, seed, args, run_ours(ours_config(args, seed, out), out))
        else:
            results[system] = record(TORCHREID, "same epochs", pair, seed, args,
                                     run_torchreid(load_config(args.config, [*args.inputs, *args.overrides,
                                                                                f"train.seed={seed}"]), seed))
    return results[TORCHREID], results[OURS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the project config both systems follow")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's)")
    parser.add_argument("--equal-wall", action="store_true",
                        help="also train ours (first seed) for as many epochs as fit in torchreid's training time")
    parser.add_argument("--equal-wall-of", metavar="PAIR",
                        help="only the equal-wall run, from that pair's first-seed lines in docs/results/peers.jsonl")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON-lines file appended to")
    parser.add_argument("--test-sets", choices=sorted(TEST_SETS), default="test",
                        help="test: the devsplit test split and all of VIPeR; test_half: and VIPeR's test half")
    parser.add_argument("overrides", nargs="*", help="config overrides applied to both systems")
    add_shared_argument(parser)
    args = parser.parse_args()
    args.inputs = shared_overrides(args.shared, args.test_sets)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.equal_wall_of:
        peer, ours = recorded_pair(args.equal_wall_of, args.seeds[0], args.results)
        run_equal_wall(args, args.equal_wall_of, peer, ours)
        return
    pair = datetime.now().strftime("%Y%m%d-%H%M%S")
    peer, ours = run_pair(args, args.seeds[0], pair)
    for seed in args.seeds[1:]:
        run_pair(args, seed, pair)
    if args.equal_wall:
        run_equal_wall(args, pair, peer, ours)


def run_equal_wall(args, pair: str, peer: dict, ours: dict) -> None:
    """Ours (first seed) for as many whole epochs as fit in torchreid's training time of that seed."""
    epochs = max(1, math.floor(ours["epochs"] * peer["train_s"] / ours["train_s"]))
    out = ROOT / "runs" / "peers" / pair / f"ours-seed{args.seeds[0]}-equal-wall"
    result = run_ours(ours_config(args, args.seeds[0], out, epochs), out)
    record(OURS, f"equal wall time ({epochs} epochs)", pair, args.seeds[0], args, result)


def recorded_pair(pair: str, seed: int, results: Path = RESULTS) -> tuple[dict, dict]:
    """(torchreid's, ours) "same epochs" lines of ``pair`` at ``seed`` from the results file."""
    lines = read_lines(results)
    found = {line["system"]: line for line in lines
             if line["pair"] == pair and line["seed"] == seed and line["label"] == "same epochs"}
    if set(found) != {TORCHREID, OURS}:
        sys.exit(f"peer_torchreid: {results} has no complete pair {pair} at seed {seed} (found {sorted(found)})")
    return found[TORCHREID], found[OURS]


if __name__ == "__main__":
    main()
