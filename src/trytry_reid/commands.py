"""One handler per CLI command: read the flags, load the config, call the job. No logic of their own."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import Config, load_config


def config_from(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None:
        default = Path("config") / "demo_digits.yml"
        if not default.is_file():
            raise FileNotFoundError("no --config given and config/demo_digits.yml is not in the current folder; "
                                    "pass --config FILE")
        path = default
    return load_config(path, args.overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from .pipeline import run_check_data, run_train

    config = config_from(args)
    if args.check_data:
        return run_check_data(config)
    run_train(config, resume=args.resume)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate_jobs import run_evaluate, run_evaluate_features

    if args.features is not None:
        if args.checkpoint is not None:
            raise ValueError("evaluate takes either --features or --checkpoint, not both")
        run_evaluate_features(args.features, args.out)
        return 0
    if args.checkpoint is None:
        raise ValueError("evaluate needs --checkpoint CKPT (with --config) or --features FILE.npz")
    run_evaluate(config_from(args), args.checkpoint, args.out, figures=args.rank)
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from .evaluate_jobs import run_rank

    run_rank(config_from(args), args.checkpoint, strategy=args.queries, num=args.num, top_k=args.top_k,
             seed=args.seed, names=args.names, out=args.out)
    return 0


def cmd_tsne(args: argparse.Namespace) -> int:
    from .evaluate_jobs import run_tsne

    run_tsne(config_from(args), args.checkpoint, max_ids=args.max_ids, thumbnails=args.thumbnails, out=args.out)
    return 0
