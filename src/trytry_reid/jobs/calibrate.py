"""The calibrate job: every query-gallery pair of each configured test set scored with a checkpoint.

Writes ``calibration.json`` (per test set: the ROC, AUC, EER, TPR at FPR 1e-2/1e-3/1e-4 with thresholds, the
distance histograms, and open-set DIR at FAR on a split with part of the gallery identities dropped) and
``calibration.png``, and stores the first test set's operating point at ``test.calibration_fpr`` in the
checkpoint (``"calibration"``; operating_point.py) unless told not to.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from trytry_reid.engine.checkpoint import load_checkpoint, save_checkpoint
from trytry_reid.evaluation.calibration import TARGET_FPRS, Calibration, rates_at
from trytry_reid.evaluation.distance import compute_distance
from trytry_reid.evaluation.open_set import best_matches, drop_gallery_identities, open_set_report
from trytry_reid.evaluation.operating_point import ENTRY_KEY, CalibrationError, check_entry, make_entry
from trytry_reid.evaluation.retrieval import RetrievalResult, camids, pids
from trytry_reid.jobs.config import Config
from trytry_reid.jobs.evaluate import default_out, evaluate_checkpoint
from trytry_reid.jobs.reports import write_json
from trytry_reid.serving.inference import load_model
from trytry_reid.visualization.calibration_plot import draw_calibration

log = logging.getLogger("trytry_reid")


def open_set_on(result: RetrievalResult, drop_fraction: float, seed: int, threshold: float | None) -> dict:
    """DIR at FAR with ``drop_fraction`` of the gallery identities removed (seeded), cosine distance; plus the
    FAR / DIR the pair-calibrated ``threshold`` gets on that search."""
    g_pids = pids(result.gallery)
    keep = drop_gallery_identities(g_pids, drop_fraction, seed)
    distmat = compute_distance(result.query_features, result.gallery_features[keep], metric="cosine")
    matches = best_matches(distmat, pids(result.query), g_pids[keep], camids(result.query),
                           camids(result.gallery)[keep])
    split = {"dropped_fraction": drop_fraction, "seed": seed, "gallery_kept": int(keep.sum())}
    try:
        return {**open_set_report(matches, threshold=threshold), **split}
    except ValueError as error:       # e.g. a tiny set left without mated queries: say so in the report
        return {"skipped": str(error), **split}


def dataset_report(result: RetrievalResult, target_fpr: float, drop_fraction: float, seed: int,
                   threshold: float) -> dict:
    """One test set's entry of calibration.json."""
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
    """Calibrate ``checkpoint`` on every configured test set; returns what calibration.json holds.
    Features are extracted without flip averaging whatever ``test.flip`` says: the threshold is for the
    embedding that search, verify, the Embedder and the ONNX export compute."""
    if config.test.flip:
        log.info("calibrate: test.flip ignored; the served embedding does not average flipped crops")
        config = replace(config, test=replace(config.test, flip=False))
    results = evaluate_checkpoint(config, load_model(checkpoint))
    out = out or default_out(checkpoint, "calibration")
    first, fpr = results[0], config.test.calibration_fpr
    entry = make_entry(require_calibration(first), fpr, first.label, checkpoint=str(Path(checkpoint).resolve()))
    payload = {"checkpoint": str(checkpoint), "metric": entry["metric"], "target_fpr": fpr,
               "rule": "same person iff cosine distance <= threshold", "operating_point": entry,
               "datasets": {r.label: dataset_report(r, fpr, open_set_drop, config.train.seed, entry["threshold"])
                            for r in results}}
    json_path = write_json(out / "calibration.json", payload)
    label = f"threshold (FPR {fpr:g} on {first.label})"
    png = draw_calibration({r.label: r.calibration for r in results}, out / "calibration.png",
                           entry["threshold"], label)
    if store:
        store_in_checkpoint(checkpoint, entry)
    print(format_calibration(payload))
    print(f"written: {json_path}, {png}")
    print(f"operating point {'stored in ' + str(checkpoint) if store else 'measured, not stored'}: "
          f"threshold {entry['threshold']:.4f} (FPR {entry['fpr']:.2e}, TPR {entry['tpr']:.3f} on {first.label})")
    return payload


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
