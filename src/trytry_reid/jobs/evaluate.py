"""The evaluate, rank and tsne jobs: a checkpoint (or saved features) against the configured test sets."""

from __future__ import annotations

import logging
from pathlib import Path

from trytry_reid.data.datasets import Record
from trytry_reid.engine import distributed
from trytry_reid.evaluation.feature_file import FeatureSet, load_features
from trytry_reid.evaluation.retrieval import RetrievalResult, evaluate_model, rank_features
from trytry_reid.jobs.builders import build_test_sets, retrieval_options
from trytry_reid.jobs.config import Config
from trytry_reid.jobs.reports import draw_ranking, draw_tsne_map, file_slug, format_table, write_figures, write_metrics
from trytry_reid.serving.inference import LoadedModel, load_model

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
        results.append(evaluate_model(loaded.model, label, splits.query, splits.gallery, loaded.transform(),
                                      **retrieval_options(config, device)))
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


def records_of(feature_set: FeatureSet) -> list[Record]:
    """Records for a feature set's rows (``#<row>`` stands for a path the file does not carry)."""
    names = feature_set.paths or [f"#{i}" for i in range(len(feature_set.pids))]
    return [Record(str(p), int(pid), int(cam)) for p, pid, cam in zip(names, feature_set.pids, feature_set.camids)]


def run_evaluate_features(path: Path, out: Path | None = None, metric: str = "cosine") -> dict:
    """Metrics from saved features of any model (see evaluation/feature_file.py for the keys)."""
    sets = load_features(path, ("query", "gallery"))
    result = rank_features(path.stem, records_of(sets["query"]), records_of(sets["gallery"]),
                           sets["query"].features, sets["gallery"].features, metric=metric)
    return report([result], out or path.resolve().parent, epoch=None)


def run_rank(config: Config, checkpoint: Path, *, strategy: str, num: int, top_k: int, seed: int,
             names: list[str] | None, out: Path | None) -> list[Path]:
    out = out or default_out(checkpoint, "figures")
    written = []
    for result in evaluate_checkpoint(config, load_model(checkpoint)):
        slug = file_slug(result.label)
        path = draw_ranking(result, out / f"ranking_{slug}_{strategy}.png", strategy=strategy, num=num,
                            top_k=top_k, seed=seed, names=names)
        print(f"ranking figure written to {path} (rows in {path.with_suffix('.json').name})")
        written.append(path)
    return written


def run_tsne(config: Config, checkpoint: Path, *, max_ids: int, thumbnails: bool, out: Path | None) -> list[Path]:
    out = out or default_out(checkpoint, "figures")
    written = []
    for result in evaluate_checkpoint(config, load_model(checkpoint)):
        slug = file_slug(result.label)
        path = draw_tsne_map(result, out / f"tsne_{slug}.png", max_ids=max_ids, seed=config.train.seed,
                             thumbnails=thumbnails)
        print(f"t-SNE map written to {path}")
        written.append(path)
    return written
