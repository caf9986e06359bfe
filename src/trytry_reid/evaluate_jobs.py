"""The evaluate, rank and tsne jobs: a checkpoint (or saved features) against the configured test sets."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .builders import build_test_sets
from .config import Config
from .data.datasets import Record
from .evaluation.feature_file import load_feature_file
from .engine import distributed
from .inference import LoadedModel, load_model
from .reports import draw_ranking, draw_tsne_map, format_table, write_figures, write_metrics
from .retrieval import RetrievalResult, evaluate_model, rank_features

log = logging.getLogger("trytry_reid")


def default_out(checkpoint: Path, sub: str) -> Path:
    """Next to the run that wrote the checkpoint: <run>/<sub> for <run>/checkpoints/x.pt."""
    parent = checkpoint.resolve().parent
    return (parent.parent if parent.name == "checkpoints" else parent) / sub


def evaluate_checkpoint(config: Config, loaded: LoadedModel) -> list[RetrievalResult]:
    """Rank every configured test set with the loaded model (inference mode, batched)."""
    device = str(distributed.device_for(distributed.current(), config.train.device))
    loaded.model.to(device)
    results = []
    for label, splits in build_test_sets(config, None):
        log.info("evaluating on %s: %d queries, %d gallery images", label, len(splits.query), len(splits.gallery))
        results.append(evaluate_model(
            loaded.model, label, splits.query, splits.gallery, loaded.transform(),
            batch_size=config.test.batch_size, workers=config.data.workers, device=device, flip=config.test.flip,
            metric=config.test.metric, use_rerank=config.test.rerank, max_rank=config.test.max_rank))
    return results


def report(results: list[RetrievalResult], out: Path, epoch: int | None) -> dict[str, dict[str, float]]:
    summaries = {r.label: r.summary() for r in results}
    path = write_metrics(out / "metrics.json", summaries, epoch)
    print(format_table(summaries))
    print(f"metrics written to {path}")
    return summaries


def run_evaluate(config: Config, checkpoint: Path, out: Path | None = None, figures: bool = False) -> dict:
    loaded = load_model(checkpoint)
    out = out or default_out(checkpoint, "evaluation")
    results = evaluate_checkpoint(config, loaded)
    summaries = report(results, out, epoch=None)
    if figures:
        t = config.test
        for path in write_figures(results, out / "figures", num_queries=t.ranking_queries or 8,
                                  top_k=t.ranking_top_k, tsne_max_ids=t.tsne_max_ids, seed=config.train.seed):
            print(f"figure written to {path}")
    return summaries


def records_from_arrays(paths: np.ndarray | None, pids: np.ndarray, camids: np.ndarray) -> list[Record]:
    names = paths if paths is not None else [f"#{i}" for i in range(len(pids))]
    return [Record(str(p), int(pid), int(cam)) for p, pid, cam in zip(names, pids, camids)]


def run_evaluate_features(path: Path, out: Path | None = None, metric: str = "cosine") -> dict:
    """Metrics from saved features of any model (see evaluation/feature_file.py for the keys)."""
    data = load_feature_file(path)
    query = records_from_arrays(data.get("query_paths"), data["query_pids"], data["query_camids"])
    gallery = records_from_arrays(data.get("gallery_paths"), data["gallery_pids"], data["gallery_camids"])
    result = rank_features(path.stem, query, gallery, data["query_features"], data["gallery_features"],
                           metric=metric)
    return report([result], out or path.resolve().parent, epoch=None)


def run_rank(config: Config, checkpoint: Path, *, strategy: str, num: int, top_k: int, seed: int,
             names: list[str] | None, out: Path | None) -> list[Path]:
    out = out or default_out(checkpoint, "figures")
    written = []
    for result in evaluate_checkpoint(config, load_model(checkpoint)):
        slug = result.label.replace("/", "_")
        path = draw_ranking(result, out / f"ranking_{slug}_{strategy}.png", strategy=strategy, num=num,
                            top_k=top_k, seed=seed, names=names)
        print(f"ranking figure written to {path} (rows in {path.with_suffix('.json').name})")
        written.append(path)
    return written


def run_tsne(config: Config, checkpoint: Path, *, max_ids: int, thumbnails: bool, out: Path | None) -> list[Path]:
    out = out or default_out(checkpoint, "figures")
    written = []
    for result in evaluate_checkpoint(config, load_model(checkpoint)):
        slug = result.label.replace("/", "_")
        path = draw_tsne_map(result, out / f"tsne_{slug}.png", max_ids=max_ids, seed=config.train.seed,
                             thumbnails=thumbnails)
        print(f"t-SNE map written to {path}")
        written.append(path)
    return written
