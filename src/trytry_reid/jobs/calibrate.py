"""The calibrate job: every query-gallery pair of each configured test set scored with a checkpoint.

Writes a report named after the checkpoint it describes, ``<out>/<checkpoint stem>.json`` (per test set: the
ROC, AUC, EER, TPR at FPR 1e-2/1e-3/1e-4 with thresholds, the distance histograms, and open-set DIR at FAR on
a split with part of the gallery identities dropped) and ``<checkpoint stem>.png``, and stores the first test
set's operating point at ``test.calibration_fpr`` in the checkpoint (``"calibration"``; operating_point.py)
unless told not to. The report and the stored point change together or not at all (``commit``): a failure
or a signal while writing leaves both as they were. What is replaced (a report, a stored threshold) is said.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from trytry_reid.atomic import atomic_file
from trytry_reid.engine.checkpoint import load_checkpoint, save_checkpoint
from trytry_reid.engine.signals import deferred_stop
from trytry_reid.evaluation.calibration import TARGET_FPRS, Calibration, rates_at
from trytry_reid.evaluation.distance import compute_distance
from trytry_reid.evaluation.open_set import best_matches, drop_gallery_identities, open_set_report
from trytry_reid.evaluation.operating_point import ENTRY_KEY, CalibrationError, check_entry, make_entry
from trytry_reid.evaluation.retrieval import RetrievalResult, camids, pids
from trytry_reid.jobs.config import Config
from trytry_reid.jobs.evaluate import default_out, evaluate_checkpoint
from trytry_reid.serving.inference import load_model
from trytry_reid.visualization.calibration_plot import DPI, calibration_figure

log = logging.getLogger("trytry_reid")


def open_set_on(result: RetrievalResult, drop_fraction: float, seed: int, threshold: float | None) -> dict:
    """DIR at FAR with ``drop_fraction`` of the gallery identities removed (seeded), cosine distance; plus the
    FAR / DIR the pair-calibrated ``threshold`` gets on that search. A split that cannot be measured (every
    gallery identity dropped, no mated or no non-mated query left) is reported as skipped, with the reason."""
    g_pids = pids(result.gallery)
    keep = drop_gallery_identities(g_pids, drop_fraction, seed)
    split = {"dropped_fraction": drop_fraction, "seed": seed, "gallery_kept": int(keep.sum())}
    if not keep.any():
        reason = (f"dropping {drop_fraction:g} of the gallery identities leaves no gallery image to search; "
                  f"use a smaller --open-set-drop")
        log.warning("open-set evaluation of %s skipped: %s", result.label, reason)
        return {"skipped": reason, **split}
    distmat = compute_distance(result.query_features, result.gallery_features[keep], metric="cosine")
    matches = best_matches(distmat, pids(result.query), g_pids[keep], camids(result.query),
                           camids(result.gallery)[keep])
    try:
        return {**open_set_report(matches, threshold=threshold), **split}
    except ValueError as error:       # e.g. a tiny set left without mated queries: say so in the report
        return {"skipped": str(error), **split}


def dataset_report(result: RetrievalResult, target_fpr: float, drop_fraction: float, seed: int,
                   threshold: float) -> dict:
    """One test set's entry of the report."""
    calibration = require_calibration(result)
    report = {"retrieval": result.summary(), **calibration.to_json(),
              "chosen": calibration.at(target_fpr).to_json(),
              "stored_threshold_here": dict(zip(("fpr", "tpr"), rates_at(calibration.roc, threshold)))}
    if drop_fraction > 0:
        report["open_set"] = open_set_on(result, drop_fraction, seed, threshold)
    return report


def require_calibration(result: RetrievalResult) -> Calibration:
    if result.calibration is None:
        raise CalibrationError(f"test set {result.label}: no positive or no negative query-gallery pairs "
                         f"({len(result.query)} queries, {len(result.gallery)} gallery images); calibration "
                         f"needs same-person pairs across cameras and different-person pairs")
    return result.calibration


def run_calibrate(config: Config, checkpoint: Path, out: Path | None = None, *, store: bool = True,
                  open_set_drop: float = 0.5) -> dict:
    """Calibrate ``checkpoint`` on every configured test set; returns what its report holds.
    Features are extracted without flip averaging whatever ``test.flip`` says: the threshold is for the
    embedding that search, verify, the Embedder and the ONNX export compute."""
    if config.test.flip:
        log.info("calibrate: test.flip ignored; the served embedding does not average flipped crops")
        config = replace(config, test=replace(config.test, flip=False))
    loaded = load_model(checkpoint)
    results = evaluate_checkpoint(config, loaded)
    out = out or default_out(checkpoint, "calibration")
    first, fpr = results[0], config.test.calibration_fpr
    entry = make_entry(require_calibration(first), fpr, first.label, checkpoint=str(Path(checkpoint).resolve()))
    payload = {"checkpoint": str(checkpoint), "metric": entry["metric"], "target_fpr": fpr,
               "rule": "same person iff cosine distance <= threshold", "operating_point": entry,
               "datasets": {r.label: dataset_report(r, fpr, open_set_drop, config.train.seed, entry["threshold"])
                            for r in results}}
    json_path, png_path = report_paths(out, checkpoint)
    replaced = replaced_report(json_path)
    label = f"threshold (FPR {fpr:g} on {first.label})"
    figure = calibration_figure({r.label: r.calibration for r in results}, entry["threshold"], label)
    commit(payload, figure, json_path, png_path, checkpoint if store else None)
    print(format_calibration(payload))
    print(f"written: {json_path}, {png_path}{replaced}")
    point = f"threshold {entry['threshold']:.4f} (FPR {entry['fpr']:.2e}, TPR {entry['tpr']:.3f} on {first.label})"
    if not store:
        print(f"operating point measured, not stored: {point}")
    elif loaded.calibration is None:
        print(f"operating point stored in {checkpoint}: {point}")
    else:
        print(f"operating point of {checkpoint} replaced: {describe_entry(loaded.calibration)} -> {point}")
    return payload


def report_paths(out: Path, checkpoint: Path) -> tuple[Path, Path]:
    """The report of ``checkpoint``: ``<out>/<checkpoint stem>.json`` and ``.png``, so that calibrating
    best.pt and last.pt of one run keeps both reports."""
    stem = Path(checkpoint).stem
    return out / f"{stem}.json", out / f"{stem}.png"


def replaced_report(json_path: Path) -> str:
    """', replacing ...' naming the report already at ``json_path`` (its checkpoint and threshold), or ''."""
    if not json_path.is_file():
        return ""
    try:
        old = json.loads(json_path.read_text())
        return (f" (replacing the report of {old['checkpoint']} written before, threshold "
                f"{old['operating_point']['threshold']:.4f})")
    except (ValueError, KeyError, TypeError):
        return " (replacing an unreadable report)"


def describe_entry(entry: dict) -> str:
    """An operating point in a few words: threshold, rates, where and when it was calibrated."""
    dataset = entry.get("dataset", "an unnamed set")
    return (f"threshold {entry['threshold']:.4f} (FPR {entry['fpr']:.2e}, TPR {entry['tpr']:.3f} on {dataset}, "
            f"{entry.get('date', 'date unknown')})")


def commit(payload: dict, figure, json_path: Path, png_path: Path, checkpoint: Path | None) -> None:
    """Write the report (json, png) and, with ``checkpoint``, store its operating point there: all or nothing.
    Both report files are written to temporaries first, then the checkpoint is rewritten (atomically), then
    the temporaries are renamed; a failure before the renames removes them, and a stop signal waits for the
    end of the block (``deferred_stop``), so the report never shows a threshold the checkpoint lacks."""
    with deferred_stop(), atomic_file(json_path, "w") as report, atomic_file(png_path) as picture:
        json.dump(payload, report, indent=2)
        report.write("\n")
        figure.savefig(picture, format="png", dpi=DPI)
        if checkpoint is not None:
            store_in_checkpoint(checkpoint, payload["operating_point"])


def format_calibration(payload: dict) -> str:
    """A fixed-width table: AUC, EER, TPR at each FPR, the stored threshold's FPR/TPR, open-set DIR@FAR."""
    head = f"{'test set':<22} {'pos':>8} {'neg':>11} {'AUC':>7} {'EER%':>6} " + \
        " ".join(f"{'TPR@' + format(f, '.0e'):>10}" for f in TARGET_FPRS) + \
        f" {'thr FPR':>9} {'thr TPR':>8} {'DIR@1e-2':>9} {'DIR@1e-3':>9}"
    lines = [head]
    for label, d in payload["datasets"].items():
        tprs = " ".join(f"{p['tpr']:10.4f}" for p in d["operating_points"] if p["target_fpr"] in TARGET_FPRS)
        dirs = [p["dir"] for p in d.get("open_set", {}).get("dir_at_far", [])]
        dir_cells = " ".join(f"{x:9.4f}" for x in dirs) if dirs else f"{'-':>9} {'-':>9}"
        here = d["stored_threshold_here"]
        lines.append(f"{label:<22} {d['num_positive']:>8} {d['num_negative']:>11} {d['auc']:7.4f} "
                     f"{100 * d['eer']:6.2f} {tprs} {here['fpr']:9.2e} {here['tpr']:8.4f} {dir_cells}")
    return "\n".join(lines)


def store_in_checkpoint(path: str | Path, entry: dict) -> None:
    """Set the checkpoint's ``"calibration"`` entry, rewriting the file atomically; nothing else changes."""
    state = load_checkpoint(path)
    state[ENTRY_KEY] = check_entry(entry, str(path))
    save_checkpoint(state, path, keep=0)   # keep=0: a numbered checkpoint must not rotate its siblings away
