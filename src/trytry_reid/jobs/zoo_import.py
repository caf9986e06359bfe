"""`trytry-reid import`: a torchreid or fast-reid model file -> a checkpoint of this project.

The checkpoint has the format of a trained run's (``model``, ``config``, ``num_classes`` 0), so evaluate, rank,
tsne, calibrate, verify, extract, index, search, serve, export and Embedder take it as they take a trained one.
Its config is a full resolved config: the model section that rebuilds the peer's network, the peer's input
(height, width, mean, std, resize interpolation) and cosine ranking; ``data.root`` is left unset, so the jobs
that read a dataset ask for it (``data.root=...``). ``imported_from`` records the source file and its SHA-256.
The file is checked whole before anything is written: every weight must find its place with its shape, and
the checkpoint is written atomically.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from trytry_reid.catalog import lookup
from trytry_reid.engine.checkpoint import file_sha256, save_checkpoint
from trytry_reid.errors import UsageError
from trytry_reid.jobs.config import Config, ModelConfig, to_dict
from trytry_reid.models import zoo_fastreid, zoo_torchreid
from trytry_reid.models.reid_model import build_reid_model
from trytry_reid.models.zoo_file import ImportOptions, ImportPlan, fit_state_dict, read_state_dict

Planner = Callable[[dict[str, torch.Tensor], Path, ImportOptions], ImportPlan]
PEERS: dict[str, Planner] = {"torchreid": zoo_torchreid.plan, "fastreid": zoo_fastreid.plan}


def run_import(peer: str, source: str | Path, out: str | Path, options: ImportOptions = ImportOptions(),
               overwrite: bool = False) -> dict[str, Any]:
    """Import ``source`` (a ``peer`` model file) into the checkpoint ``out``; returns what was done."""
    planner = lookup(PEERS, peer, "peer toolkit (--from)")
    source, out = Path(source), Path(out)
    if out.exists() and not overwrite:
        raise UsageError(f"--out {out} exists; choose another path or pass --overwrite")
    check_options(options)
    state = read_state_dict(source)
    plan = planner(state, source, options)
    model = build_reid_model(num_classes=0, **plan.model, pretrained="none")
    weights = fit_state_dict(model, plan.renamed, source, plan.arch, plan.filled)
    model.load_state_dict(weights, strict=True)
    config = imported_config(plan)
    checkpoint = {"model": weights, "config": to_dict(config), "num_classes": 0,
                  "imported_from": {"peer": peer, "arch": plan.arch, "file": source.name,
                                    "sha256": file_sha256(source), "dropped_keys": plan.renamed.dropped}}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint, out, keep=0)
    return {"out": str(out), "arch": plan.arch, "backbone": plan.model["backbone"], "notes": plan.notes,
            "weights": len(plan.renamed.weights), "dropped": plan.renamed.dropped,
            "feature_dim": int(model.output_dim), **plan.preprocessing}


def check_options(options: ImportOptions) -> None:
    for name in ("height", "width"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} {value}: expected a positive number of pixels")
    if options.last_stride not in (None, 1, 2):
        raise UsageError(f"--last-stride {options.last_stride}: expected 1 or 2")


def imported_config(plan: ImportPlan) -> Config:
    """The config stored with the weights: defaults, the plan's model section and the peer's preprocessing."""
    config = Config(name=f"import-{plan.arch}")
    config.model = replace(ModelConfig(), pretrained="none", **plan.model)
    prep = plan.preprocessing
    config.data = replace(config.data, height=int(prep["height"]), width=int(prep["width"]),
                          mean=[float(v) for v in prep["mean"]], std=[float(v) for v in prep["std"]],
                          interpolation=prep["interpolation"])
    config.test.metric = "cosine"
    return config


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"imported {summary['arch']} (backbone {summary['backbone']}, {summary['feature_dim']}-d features, "
             f"{summary['weights']} weights; dropped: {', '.join(summary['dropped']) or 'nothing'}) -> "
             f"{summary['out']}",
             f"input {summary['height']}x{summary['width']}, {summary['interpolation']} resize, mean "
             f"{summary['mean']}, std {summary['std']}"]
    lines += [f"note: {note}" for note in summary["notes"]]
    return "\n".join(lines)
