"""Checks of an exported model (any engine) against the PyTorch model it was made from, on real images.

fp32 files must reproduce PyTorch: max |feature difference| <= ``tolerance`` (1e-4) and the same top-k
rankings up to swaps of near-equal scores. INT8 files cannot; they are measured instead: how often their
top-k lists equal PyTorch's, and the mAP and rank-1 of each labelled test set with both, failing when mAP
drops by more than the bound the user sets.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from trytry_reid.data.images import read_image
from trytry_reid.errors import ReidError, UsageError
from trytry_reid.serving.model_metadata import preprocessing


class ExportCheckError(ReidError, RuntimeError):
    """An exported model disagrees with PyTorch beyond what its check allows; nothing unchecked is kept."""


def ranking_agreement(reference_q: np.ndarray, reference_g: np.ndarray, other_q: np.ndarray,
                      other_g: np.ndarray, k: int, tie_tolerance: float, same_set: bool) -> dict:
    """Compare the top-k gallery lists of two feature sets.

    ``identical``: fraction of queries with exactly the same top-k list. ``equivalent``: fraction whose
    other-list, scored with the reference features, is a reference top-k up to score differences below
    ``tie_tolerance`` (swaps between near-equal scores are allowed). With ``same_set`` a query never
    ranks itself.
    """
    ref_scores = reference_q @ reference_g.T                          # [Q, G]
    oth_scores = other_q @ other_g.T
    if same_set:
        np.fill_diagonal(ref_scores, -np.inf)
        np.fill_diagonal(oth_scores, -np.inf)
    k = min(k, ref_scores.shape[1] - int(same_set))
    ref_top = np.argsort(-ref_scores, axis=1, kind="stable")[:, :k]
    oth_top = np.argsort(-oth_scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(ref_scores, ref_top, 1)
    achieved = np.take_along_axis(ref_scores, oth_top, 1)
    equivalent = (np.abs(best - achieved) <= tie_tolerance).all(axis=1)
    return {"k": int(k), "identical": float((ref_top == oth_top).all(axis=1).mean()),
            "equivalent": float(equivalent.mean())}


def check_metadata(model, loaded_model) -> None:
    """The file's input contract must be the checkpoint's (size, resize filter, normalisation, feature size)."""
    expected = preprocessing(loaded_model)
    c = model.contract
    found = {"height": str(c.height), "width": str(c.width), "feature_dim": str(c.feature_dim),
             "mean": [float(m) for m in c.mean], "std": [float(s) for s in c.std], "interpolation": c.interpolation}
    wanted = {"height": expected["height"], "width": expected["width"], "feature_dim": expected["feature_dim"],
              "mean": [float(m) for m in loaded_model.mean], "std": [float(s) for s in loaded_model.std],
              "interpolation": expected["interpolation"]}
    wrong = {key: (found[key], wanted[key]) for key in wanted if found[key] != wanted[key]}
    if wrong:
        raise ExportCheckError(f"{model.source}: metadata does not match the model's preprocessing: "
                               f"{{key: (file, model)}} = {wrong}")


def embed_both(model, loaded_model, paths: Sequence, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(PyTorch features, ``model``'s features), each [len(paths), D] float32, from the same input tensors.
    PyTorch is the checkpoint's model as it is (eager, unfolded): the reference every engine is held to."""
    transform = loaded_model.transform()
    device = next(loaded_model.model.parameters()).device
    torch_parts, other_parts = [], []
    for start in range(0, len(paths), batch_size):
        batch = torch.stack([transform(read_image(str(p))) for p in paths[start:start + batch_size]])
        with torch.inference_mode():
            torch_parts.append(loaded_model.model.eval().embed(batch.to(device)).float().cpu().numpy())
        other_parts.append(np.asarray(model.run(batch), dtype=np.float32))
    return np.concatenate(torch_parts), np.concatenate(other_parts)


def _both_sets(model, loaded_model, image_paths, gallery_paths, batch_size):
    if len(image_paths) < 2 and gallery_paths is None:
        raise UsageError(f"the export check needs at least 2 images to compare rankings, got {len(image_paths)}")
    check_metadata(model, loaded_model)
    torch_q, other_q = embed_both(model, loaded_model, image_paths, batch_size)
    torch_g, other_g = (torch_q, other_q) if gallery_paths is None else \
        embed_both(model, loaded_model, gallery_paths, batch_size)
    return torch_q, other_q, torch_g, other_g


def check_fp32(model, loaded_model, image_paths: Sequence, *, gallery_paths: Sequence | None = None,
               tolerance: float = 1e-4, top_k: int = 10, batch_size: int = 32) -> dict:
    """Run ``model`` (a ``runtimes.InferenceModel``) and PyTorch on real images; raise ``ExportCheckError``
    when they disagree.

    Checks: the metadata contract, max |feature difference| <= ``tolerance``, and the same top-``top_k``
    rankings (up to swaps of scores closer than ``2 * tolerance``) of ``image_paths`` as queries against
    ``gallery_paths`` (or against each other when no gallery is given). Returns the measurements.
    """
    torch_q, other_q, torch_g, other_g = _both_sets(model, loaded_model, image_paths, gallery_paths, batch_size)
    max_diff = float(max(np.abs(torch_q - other_q).max(), np.abs(torch_g - other_g).max()))
    if max_diff > tolerance:
        raise ExportCheckError(f"{model.source}: max |{model.engine} - PyTorch| = {max_diff:.3g} over "
                               f"{len(image_paths)} images exceeds the tolerance {tolerance:g}")
    ranking = ranking_agreement(torch_q, torch_g, other_q, other_g, top_k, 2 * tolerance, gallery_paths is None)
    if ranking["equivalent"] < 1.0:
        raise ExportCheckError(f"{model.source}: top-{ranking['k']} rankings differ from PyTorch beyond near-ties "
                               f"for {1 - ranking['equivalent']:.1%} of queries")
    return {"engine": model.engine, "precision": model.contract.precision, "max_abs_diff": max_diff,
            "tolerance": tolerance, "num_queries": len(torch_q), "num_gallery": len(torch_g),
            f"top{ranking['k']}_identical": ranking["identical"],
            f"top{ranking['k']}_equivalent": ranking["equivalent"]}


def topk_overlap(reference_q: np.ndarray, reference_g: np.ndarray, other_q: np.ndarray, other_g: np.ndarray,
                 k: int, same_set: bool) -> dict:
    """How much two feature sets agree on each query's top-k gallery list: ``identical`` (the fraction of
    queries whose ordered lists are equal) and ``overlap`` (the mean fraction of shared items, any order)."""
    lists = []
    for q, g in ((reference_q, reference_g), (other_q, other_g)):
        scores = q @ g.T
        if same_set:
            np.fill_diagonal(scores, -np.inf)
        k = min(k, scores.shape[1] - int(same_set))
        lists.append(np.argsort(-scores, axis=1, kind="stable")[:, :k])
    ours, theirs = lists
    shared = [len(set(a) & set(b)) / k for a, b in zip(ours, theirs)]
    return {"k": int(k), "identical": float((ours == theirs).all(axis=1).mean()), "overlap": float(np.mean(shared))}


def measure_agreement(model, loaded_model, image_paths: Sequence, *, top_k: int = 10, batch_size: int = 32) -> dict:
    """An INT8 (or any) model's top-k agreement with PyTorch on real images (each against the others), and
    the largest feature difference; nothing is enforced."""
    torch_q, other_q, _, _ = _both_sets(model, loaded_model, image_paths, None, batch_size)
    agreement = topk_overlap(torch_q, torch_q, other_q, other_q, top_k, same_set=True)
    return {"engine": model.engine, "precision": model.contract.precision, "num_images": len(image_paths),
            "max_abs_diff": float(np.abs(torch_q - other_q).max()),
            f"top{agreement['k']}_identical": agreement["identical"],
            f"top{agreement['k']}_overlap": agreement["overlap"]}


def accuracy_change(model, loaded_model, label: str, query: list, gallery: list, *, batch_size: int = 128,
                    workers: int = 0, top_k: int = 10) -> dict:
    """mAP and rank-1 of one labelled test set with PyTorch's features and with ``model``'s (cosine
    distance, no flip, re-ranking or query expansion: the features alone), their change in points, and the
    top-k agreement of the two rankings."""
    from trytry_reid.evaluation.features import embed_records, extract_features
    from trytry_reid.evaluation.retrieval import rank_features

    transform = loaded_model.transform()
    options = dict(batch_size=batch_size, workers=workers, progress=False)
    reference = [extract_features(loaded_model.model, part, transform, **options) for part in (query, gallery)]
    other = [embed_records(model.run, part, transform, **options) for part in (query, gallery)]
    before = rank_features(label, query, gallery, *reference).summary()
    after = rank_features(label, query, gallery, *other).summary()
    agreement = topk_overlap(*reference, *other, top_k, same_set=False)
    return {"test_set": label, "engine": model.engine, "precision": model.contract.precision,
            "num_query": len(query), "num_gallery": len(gallery),
            "mAP_pytorch": before["mAP"], "mAP": after["mAP"],
            "mAP_change_points": 100 * (after["mAP"] - before["mAP"]),
            "rank1_pytorch": before["rank1"], "rank1": after["rank1"],
            "rank1_change_points": 100 * (after["rank1"] - before["rank1"]),
            f"top{agreement['k']}_identical": agreement["identical"],
            f"top{agreement['k']}_overlap": agreement["overlap"]}


def check_accuracy(model, loaded_model, test_sets: Sequence[tuple[str, list, list]], max_map_drop: float,
                   **options) -> list[dict]:
    """``accuracy_change`` on each (label, query records, gallery records); raise ``ExportCheckError`` when
    mAP drops by more than ``max_map_drop`` points on any of them."""
    if not test_sets:
        raise UsageError("the accuracy check needs at least one labelled test set")
    rows = [accuracy_change(model, loaded_model, label, query, gallery, **options)
            for label, query, gallery in test_sets]
    for row in rows:
        if not math.isfinite(row["mAP_change_points"]):
            raise ExportCheckError(f"{model.source}: no mAP on {row['test_set']} (PyTorch {row['mAP_pytorch']}, "
                                   f"it {row['mAP']}): the accuracy check needs queries with a match")
        if -row["mAP_change_points"] > max_map_drop:
            raise ExportCheckError(
                f"{model.source}: mAP on {row['test_set']} drops by {-row['mAP_change_points']:.2f} points "
                f"({row['mAP_pytorch']:.2%} with PyTorch, {row['mAP']:.2%} with it), more than the allowed "
                f"{max_map_drop:g} (--max-map-drop)")
    return rows
