"""The training step and loop on a tiny real model: update rule, logging, checkpoints, failures, AMP, loaders."""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_scripts.precision_check import BF16_UPDATE_BOUND, measure
from engine_scripts.tiny_run import GeneratedImages, build, make_evaluate

from trytry_reid.data.sampler import PKSampler
from trytry_reid.engine import (
    EpochLoaders,
    NonFiniteLossError,
    SkippedStepsError,
    capture_rng_state,
    fit,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    train_step,
)
from trytry_reid.engine.precision import onednn_fp32_precision
from trytry_reid.engine.train import FitOptions


class RecordingWriter:
    """Stands in for SummaryWriter: remembers every scalar tag and value."""

    def __init__(self) -> None:
        self.scalars: dict[str, list[tuple[int, float]]] = {}

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.setdefault(tag, []).append((step, float(value)))


def _first_batch(loaders: EpochLoaders):
    return next(iter(loaders(0, 0)))


def test_train_step_matches_the_update_rule_written_out() -> None:
    """forward -> sum of terms -> backward -> Adam step; centers: grad / weight then SGD; scheduler per step."""
    objects, loaders, options = build(seed=3)
    images, labels = _first_batch(loaders)[:2]
    ref_model, ref_crit = copy.deepcopy(objects.model), copy.deepcopy(objects.criterion)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=objects.optimizer.param_groups[0]["lr"])
    torch.manual_seed(11)
    values = train_step(objects, images, labels, options, step=1)
    torch.manual_seed(11)  # the random_negative selector draws from the global RNG: same draw
    terms, _ = ref_crit(ref_model(images), labels)
    total = terms["cross_entropy"] + terms["triplet"] + terms["center"]
    total.backward()
    ref_opt.step()
    centers = ref_crit.modules_by_name["center"].centers
    expected_centers = centers.detach() - 0.5 * centers.grad / 5e-4
    assert values["loss/total"] == pytest.approx(total.item(), rel=1e-6)
    for (name, got), (_, want) in zip(objects.model.state_dict().items(), ref_model.state_dict().items()):
        assert torch.allclose(got, want, atol=1e-6), name
    assert torch.allclose(objects.criterion.modules_by_name["center"].centers, expected_centers, atol=1e-5)
    assert objects.scheduler.last_epoch == 1  # stepped once per iteration
    assert values["_skipped"] == 0.0 and values["triplet/valid_triplets"] >= 0


def test_fit_logs_evaluates_checkpoints_and_learns(tmp_path: Path) -> None:
    objects, loaders, options = build(seed=0, epochs=4, ckpt_dir=tmp_path)
    options.eval_every, options.collapse_window = 2, 2
    writer = RecordingWriter()
    history = fit(objects, loaders, options, evaluate=make_evaluate(objects.model), writer=writer)
    steps = 4 * options.steps_per_epoch
    assert history["steps"] == list(range(1, steps + 1))
    assert all(len(v) == steps for v in [*history["loss"].values(), *history["stats"].values()])
    assert set(history["loss"]) == {"total", "cross_entropy", "triplet", "center"}
    assert history["loss"]["total"][-1] < history["loss"]["total"][0]
    assert history["warnings"] == []  # a healthy run does not look collapsed
    warmup = options.steps_per_epoch  # build(): warmup over the first epoch from 0.1x of lr 0.01
    assert history["lr"][:warmup + 1] == pytest.approx([0.01 * (0.1 + 0.9 * s / warmup) for s in range(warmup)]
                                                       + [0.01])
    assert [(e["epoch"], e["dataset"]) for e in history["eval"]] == [(2, "generated"), (4, "generated")]
    for tag in ("train/loss/total", "train/loss/triplet", "train/lr", "train/triplet/valid_fraction",
                "train/triplet/valid_triplets", "train/triplet/mean_pos_dist", "train/embedding_norm",
                "eval/generated/mAP", "eval/generated/rank1", "eval/generated/mINP"):
        assert tag in writer.scalars, tag
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "epoch_0003.pt", "epoch_0004.pt", "last.pt"]
    last = load_checkpoint(tmp_path / "last.pt")
    assert (last["epoch"], last["step"], last["step_in_epoch"]) == (4, steps, 0)
    assert last["config"]["model"]["backbone"] == "tiny" and last["num_classes"] == 6
    assert last["history"]["data"]["eval"] == history["eval"]
    best_map = max(e["mAP"] for e in history["eval"])
    assert load_checkpoint(tmp_path / "best.pt")["best_map"] == pytest.approx(best_map)
    assert torch.equal(last["model"]["classifier.weight"], objects.model.classifier.weight)


def test_non_finite_loss_names_step_terms_and_ids_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    objects, loaders, options = build(seed=0, epochs=2, ckpt_dir=tmp_path, every=1)
    poisoned = 5
    loaders.dataset.dataset.images[poisoned] = math.nan
    batches = [b for b in EpochLoaders(loaders.dataset.dataset, loaders.batch_sampler, seed=0)(0, 0)]
    bad_step = next(i for i, b in enumerate(batches) if poisoned in b[3].tolist()) + 1
    with pytest.raises(NonFiniteLossError) as info:
        fit(objects, loaders, options)
    message = str(info.value)
    assert f"at step {bad_step}:" in message and "cross_entropy=nan" in message and "triplet=" in message
    assert str(poisoned) in message.split("dataset indices")[1]
    if bad_step > 1:
        saved = load_checkpoint(tmp_path / "last.pt")
        assert saved["step"] == bad_step - 1
        assert f"the last good checkpoint, {tmp_path / 'last.pt'}, is kept" in message
        for name, value in objects.model.named_parameters():  # the bad step applied no update
            assert torch.equal(saved["model"][name], value), name
        # its forward did poison the BatchNorm running stats in memory; the checkpoint holds good ones
        assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    assert all(torch.isfinite(p).all() for p in objects.model.parameters())


def test_non_finite_loss_before_any_checkpoint_does_not_promise_one(tmp_path: Path) -> None:
    objects, loaders, options = build(seed=0, epochs=2, ckpt_dir=tmp_path, every=1)
    first = next(iter(EpochLoaders(loaders.dataset.dataset, loaders.batch_sampler, seed=0)(0, 0)))
    loaders.dataset.dataset.images[int(first[3][0])] = math.nan
    with pytest.raises(NonFiniteLossError) as info:
        fit(objects, loaders, options)
    message = str(info.value)
    assert "at step 1:" in message and "no checkpoint was written yet" in message
    assert "last good checkpoint" not in message and not (tmp_path / "last.pt").exists()


def test_collapsed_embeddings_are_warned_about(caplog) -> None:
    objects, loaders, options = build(seed=0, epochs=2)
    with torch.no_grad():
        objects.model.trunk[-2].weight.zero_()  # last conv: every feature becomes the same (bias) vector
        objects.model.trunk[-2].bias.zero_()
    objects.model.trunk[-2].requires_grad_(False)
    options.collapse_window = 3
    writer = RecordingWriter()
    with caplog.at_level(logging.WARNING, logger="trytry_reid.engine.train"):
        history = fit(objects, loaders, options, writer=writer)
    assert history["warnings"] and "embeddings collapsed" in history["warnings"][0]["message"]
    assert history["warnings"][0]["step"] == 3
    assert "embeddings collapsed" in caplog.text
    assert writer.scalars["train/collapse_warning"] == [(3, 1.0)]


def test_fp16_overflow_every_step_stops_with_clear_error() -> None:
    objects, loaders, options = build(seed=0, epochs=3, amp="fp16")
    objects.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**120)  # float32 grads overflow until scale < ~1e30
    options.max_skipped_steps = 3
    before = copy.deepcopy(objects.model.state_dict())
    with pytest.raises(SkippedStepsError, match="skipped 3 optimizer steps in a row"):
        fit(objects, loaders, options)
    for name, value in objects.model.state_dict().items():
        if value.is_floating_point() and "running" not in name:
            assert torch.equal(value, before[name]), name  # skipped steps change no weight


def test_channels_last_steps_match_the_default_layout() -> None:
    results = {}
    for channels_last in (False, True):
        objects, loaders, options = build(seed=5, epochs=1, dropout=0.0)  # dropout masks follow memory layout
        options.channels_last = channels_last
        fit(objects, loaders, options)
        results[channels_last] = objects.model.classifier.weight.detach().clone()
    assert torch.allclose(results[True], results[False], atol=1e-5)


def test_bf16_steps_track_float32_within_bf16_rounding() -> None:
    """bf16 autocast and oneDNN's bf16 fp32 math stay within the precision-derived bound of the float32
    update (engine_scripts/precision_check.py); on this CPU, whatever bf16 instructions it has."""
    measured = measure()
    assert 0.0 < measured["amp_bf16"] <= BF16_UPDATE_BOUND, measured     # bf16 really ran, and tracks fp32
    assert measured["fp32_precision_bf16"] <= BF16_UPDATE_BOUND, measured


def test_bf16_steps_track_float32_on_a_cpu_without_native_bf16() -> None:
    """The same with oneDNN capped at AVX2 (no AVX512-BF16, no AMX), as on an older x86-64 CPU: bf16 is
    emulated or falls back to fp32, training still runs, and the drift stays within the bound."""
    import json
    import subprocess
    import sys

    tests = Path(__file__).resolve().parent
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "PYTHONPATH": f"{tests.parent / 'src'}{os.pathsep}{tests}"}
    done = subprocess.run([sys.executable, str(tests / "engine_scripts" / "precision_check.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0.0 < measured["amp_bf16"] <= BF16_UPDATE_BOUND, measured
    assert measured["fp32_precision_bf16"] <= BF16_UPDATE_BOUND, measured


def test_fp32_precision_holds_for_the_training_steps_only() -> None:
    """oneDNN's reduced fp32 math covers the steps, not evaluation, and the setting comes back after fit."""
    objects, loaders, options = build(seed=5, epochs=2, dropout=0.0)
    options.fp32_precision, options.eval_every = "bf16", 1
    seen: dict[str, set[str]] = {"train": set(), "eval": set()}
    objects.model.trunk.register_forward_hook(lambda module, args, out: seen["train" if module.training else "eval"]
                                              .add(torch.backends.mkldnn.conv.fp32_precision))
    before = (torch.backends.mkldnn.conv.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision)
    fit(objects, loaders, options, evaluate=make_evaluate(objects.model))
    assert seen == {"train": {"bf16"}, "eval": {before[0]}}
    assert (torch.backends.mkldnn.conv.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision) == before
    reference_objects, _, reference_options = build(seed=5, epochs=2, dropout=0.0)
    fit(reference_objects, loaders, reference_options)
    assert torch.allclose(objects.model.classifier.weight, reference_objects.model.classifier.weight, atol=5e-3)


def test_fp32_precision_context_restores_after_an_error() -> None:
    before = torch.backends.mkldnn.conv.fp32_precision
    with pytest.raises(RuntimeError, match="inside"):
        with onednn_fp32_precision("tf32"):
            assert torch.backends.mkldnn.conv.fp32_precision == "tf32"
            assert torch.backends.mkldnn.matmul.fp32_precision == "tf32"
            raise RuntimeError("inside")
    assert torch.backends.mkldnn.conv.fp32_precision == before
    with pytest.raises(ValueError, match="fp32_precision must be one of none, bf16, tf32, got 'fp16'"):
        with onednn_fp32_precision("fp16"):
            pass


def add_batch_noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A batch transform drawing from its generator (as data/batch_augment.BatchPhotometric does)."""
    return images + torch.rand(images.shape, generator=generator)


def test_epoch_loaders_same_batches_for_any_workers_and_start(monkeypatch) -> None:
    dataset = GeneratedImages(6, 4, augment=True)
    sampler = PKSampler(dataset.labels, p=3, k=2, seed=1, num_batches=4)
    loaders = EpochLoaders(dataset, sampler, seed=7, workers=0, batch_transform=add_batch_noise)
    rng_before = torch.get_rng_state()
    full = list(loaders(epoch=2))
    assert torch.equal(torch.get_rng_state(), rng_before)  # augmentation left the global RNG alone
    tail = list(loaders(epoch=2, start_batch=2))
    parallel_iter = iter(EpochLoaders(dataset, sampler, seed=7, workers=2, batch_transform=add_batch_noise)(epoch=2))
    parallel = [next(parallel_iter)]
    for worker in parallel_iter._workers:  # Ctrl-C reaches the whole process group: workers must survive it
        os.kill(worker.pid, signal.SIGINT)
        os.kill(worker.pid, signal.SIGTERM)
    parallel += list(parallel_iter)
    other_epoch = list(loaders(epoch=3))
    assert len(full) == 4 and len(tail) == 2
    for a, b in zip(full[2:], tail):
        assert torch.equal(a[0], b[0]) and torch.equal(a[3], b[3])
    for a, b in zip(full, parallel):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(full[0][0], other_epoch[0][0])
    plain = list(EpochLoaders(dataset, sampler, seed=7, workers=0)(epoch=2))  # the same samples, no batch noise
    noise = [a[0] - b[0] for a, b in zip(full, plain)]
    assert all(0 <= n.min() and n.max() < 1 and n.std() > 0.2 for n in noise)
    assert not torch.allclose(noise[0], noise[1])  # each batch draws its own
    clean = torch.stack([dataset.images[i] for i in full[0][3].tolist()])
    assert not torch.allclose(full[0][0], clean) and not torch.allclose(full[0][0], clean.flip(-1))


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)
    save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), random.gauss(0, 1), np.random.randn(3).tolist(), torch.rand(3))
    random.seed(100), np.random.seed(100), torch.manual_seed(100)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = (random.random(), random.gauss(0, 1), np.random.randn(3).tolist(), torch.rand(3))
    assert got[:3] == expected[:3] and torch.equal(got[3], expected[3])


@pytest.mark.parametrize("bad, fragment", [({"amp": "fp8"}, "amp must be one of"),
                                           ({"fp32_precision": "fp8"}, "fp32_precision must be one of"),
                                           ({"epochs": 0}, "FitOptions.epochs must be >= 1")])
def test_bad_options_are_named(bad: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        FitOptions(**{"epochs": 1, "steps_per_epoch": 1, **bad})


def test_loader_shorter_than_steps_per_epoch_is_an_error() -> None:
    objects, loaders, options = build(seed=0, epochs=1)
    options.steps_per_epoch = len(loaders) + 1
    with pytest.raises(ValueError, match=r"ran out after batch 2, but steps_per_epoch is 3"):
        fit(objects, loaders, options)
