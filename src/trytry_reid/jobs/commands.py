"""One handler per CLI command: read the flags, load the config (a file, or the checkpoint's own), call the
job. No training or evaluation logic of their own."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from trytry_reid.errors import ConfigError, UsageError
from trytry_reid.jobs.config import Config, load_config, resolve_config

# The embedded demo's config, relative to a checkout's root: `train` without --config runs it from there
# (main.py passes it with the checkout's absolute path).
DEMO_CONFIG = Path("config") / "demo_digits.yml"


def config_from(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None:
        if not DEMO_CONFIG.is_file():
            raise UsageError(f"no --config given and {DEMO_CONFIG} is not in the current folder; pass --config FILE")
        path = DEMO_CONFIG
    return load_config(path, args.overrides)


def checkpoint_config(checkpoint: Path, overrides: list[str]) -> Config:
    """The config a checkpoint was trained with (its test sets included), with trailing overrides applied."""
    from trytry_reid.engine.checkpoint import load_checkpoint

    stored = load_checkpoint(checkpoint).get("config")
    if not isinstance(stored, dict):
        raise UsageError(f"checkpoint {checkpoint} stores no config; pass --config FILE")
    try:
        return resolve_config(stored, overrides)
    except ConfigError as error:
        raise ConfigError(blame(error, checkpoint, overrides)) from error


NAMED_KEY = re.compile(r"(?:config key|override) '([^'=]+)")


def blame(error: ConfigError, checkpoint: Path, overrides: list[str]) -> str:
    """Each problem of ``error`` with where it comes from: an override on the command line (the problem names
    its key, or a key under it) or the config stored in the checkpoint."""
    given = {item.partition("=")[0].strip(): item for item in overrides}

    def source(problem: str) -> str:
        named = NAMED_KEY.findall(problem)
        for key, item in given.items():
            if any(name == key or name.startswith((f"{key}.", f"{key}[")) for name in named):
                return f"{item} on the command line"
        return f"the config stored in {checkpoint}"

    problems = getattr(error, "problems", [str(error)])
    if len(problems) == 1:
        return f"{source(problems[0])}: {problems[0]}"
    return f"{len(problems)} config problems:\n  " + "\n  ".join(f"{source(p)}: {p}" for p in problems)


def job_config(args: argparse.Namespace) -> Config:
    """--config with overrides when given, else the config stored in --checkpoint (its test sets included)."""
    return config_from(args) if args.config is not None else checkpoint_config(args.checkpoint, args.overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from trytry_reid.jobs.train import run_check_data, run_train

    config = config_from(args)
    if args.check_data:
        return run_check_data(config)
    run_train(config, resume=args.resume, overwrite=args.overwrite)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trytry_reid.jobs.evaluate import run_evaluate, run_evaluate_features

    if args.features is not None:
        if args.checkpoint is not None:
            raise UsageError("evaluate takes either --features or --checkpoint, not both")
        run_evaluate_features(args.features, args.out)
        return 0
    if args.checkpoint is None:
        raise UsageError("evaluate needs --checkpoint CKPT (with --config) or --features FILE.npz")
    run_evaluate(job_config(args), args.checkpoint, args.out, figures=args.rank)
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from trytry_reid.jobs.evaluate import run_rank

    run_rank(job_config(args), args.checkpoint, strategy=args.queries, num=args.num, top_k=args.top_k,
             seed=args.seed, names=args.names, out=args.out)
    return 0


def cmd_tsne(args: argparse.Namespace) -> int:
    from trytry_reid.jobs.evaluate import run_tsne

    run_tsne(job_config(args), args.checkpoint, max_ids=args.max_ids, thumbnails=args.thumbnails, out=args.out)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from trytry_reid.jobs.calibrate import run_calibrate

    if not 0.0 <= args.open_set_drop < 1.0:
        raise UsageError(f"--open-set-drop {args.open_set_drop}: expected a fraction in [0, 1) (0 skips open-set)")
    run_calibrate(job_config(args), args.checkpoint, args.out, store=not args.no_store,
                  open_set_drop=args.open_set_drop)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from trytry_reid.jobs.verify import verify_pair

    decision = verify_pair(args.checkpoint, *args.images, threshold=args.threshold)
    print(json.dumps(decision) if args.json else format_decision(decision))
    return 0


def format_decision(decision: dict) -> str:
    rates = "FPR/TPR of this threshold unknown (no calibration)" if decision["fpr"] is None else \
        f"FPR {decision['fpr']:.2e}, TPR {decision['tpr']:.3f} on {decision['dataset']}"
    return (f"{decision['verdict']}: distance {decision['distance']:.4f} "
            f"{'<=' if decision['same'] else '>'} threshold {decision['threshold']:.4f} "
            f"({decision['threshold_source']}; {rates})")


def model_file(args: argparse.Namespace) -> Path | None:
    """The model file of --engine: --checkpoint for torch, --model for onnx and openvino (None: neither given)."""
    if args.engine == "torch":
        if args.model is not None and args.checkpoint is not None:
            raise UsageError("--engine torch takes the checkpoint as --checkpoint or --model, not both")
        return args.checkpoint if args.checkpoint is not None else args.model
    if args.checkpoint is not None:
        raise UsageError(f"--checkpoint is the torch engine's model; --engine {args.engine} runs an exported file: "
                         f"pass it as --model (trytry-reid export --format {args.engine} writes one)")
    return args.model


def open_engine(args: argparse.Namespace):
    """--engine's model, opened (runtimes.InferenceModel); the flag naming the file is required."""
    from trytry_reid.serving.runtimes import open_model

    path = model_file(args)
    if path is None:
        flag = "--checkpoint" if args.engine == "torch" else "--model"
        raise UsageError(f"--engine {args.engine} needs {flag} FILE")
    return open_model(args.engine, path)


def cmd_extract(args: argparse.Namespace) -> int:
    from trytry_reid.evaluation.feature_file import save_features
    from trytry_reid.serving.folder_images import extract_folder

    found = extract_folder(open_engine(args), args.images, batch_size=args.batch_size,
                           workers=args.workers, on_bad_image=args.on_bad_image, max_bad_images=args.max_bad_images)
    path = save_features(args.out, {"": found})
    print(f"{len(found.paths)} features ({found.features.shape[1]}-d, L2-normalised) written to {path}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from trytry_reid.serving.index import index_folder

    options = {"nlist": args.nlist, "nprobe": args.nprobe} if args.backend == "faiss-ivf" else {}
    index, added = index_folder(open_engine(args), args.images, args.out, backend=args.backend,
                                batch_size=args.batch_size, workers=args.workers,
                                on_bad_image=args.on_bad_image, max_bad_images=args.max_bad_images, **options)
    print(f"index {args.out}: {added} images added, {len(index)} in all")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from trytry_reid.evaluation.operating_point import resolve_threshold
    from trytry_reid.serving.answer import format_answer, index_calibration, search_answer, stale_copy_note
    from trytry_reid.serving.folder_images import embed_images
    from trytry_reid.serving.index import GalleryIndex, check_index_model, read_index_info
    from trytry_reid.serving.runtimes import open_model, recorded_model

    engine, checkpoint = ("torch", args.checkpoint) if args.checkpoint else \
        recorded_model(read_index_info(args.index)) or (None, None)
    if checkpoint is None:
        raise UsageError(f"index {args.index} records no checkpoint; pass --checkpoint")
    index, loaded = GalleryIndex.load(args.index), open_model(engine, checkpoint)
    check_index_model(index, args.index, checkpoint, loaded)
    note = stale_copy_note(index, loaded, checkpoint)
    if note is not None:
        print(note, file=sys.stderr)
    threshold = resolve_threshold(args.threshold, index_calibration(index, loaded))
    answer = search_answer(index, embed_images(loaded, [args.query]), args.top_k, threshold)
    print(json.dumps({"query": str(args.query), **answer}) if args.json else format_answer(answer, threshold))
    if args.figure is not None:
        from trytry_reid.jobs.reports import draw_search_result

        ids = [item["id"] for item in answer["results"]]
        path = draw_search_result(str(args.query), index.paths, ids, [item["distance"] for item in answer["results"]],
                                  args.figure)
        print(f"figure written to {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """The model is written under a temporary name and moved to --out once complete and, when there is one,
    its check has passed (jobs/export.py, serving/export_formats.py): a failed check or a signal leaves nothing
    half-made or unchecked at --out (an earlier file there is kept)."""
    from trytry_reid.jobs.export import run_export

    check_export_flags(args)

    def test_config() -> Config:
        return load_config(args.check_config, []) if args.check_config is not None else \
            checkpoint_config(args.checkpoint, [])

    path, loaded, report = run_export(args.checkpoint, args.out, args.format, check_images=args.check_images,
                                      int8=args.int8, calibration_images=args.calibration_images,
                                      calibration_count=args.calibration_count, test_config=test_config,
                                      max_map_drop=args.max_map_drop)
    kind = "INT8" if args.int8 else "fp32"
    print(f"exported {path} ({args.format}, {kind}; input: batch x 3 x {loaded.height} x {loaded.width}, RGB in "
          f"[0, 1] normalised with mean {list(loaded.mean)} and std {list(loaded.std)}; output: L2-normalised "
          f"features)")
    if report is not None:
        print("check: " + json.dumps(report, default=str))
    return 0


def check_export_flags(args: argparse.Namespace) -> None:
    int8_only = [flag for flag, value in (("--calibration-images", args.calibration_images),
                                          ("--check-config", args.check_config)) if value is not None]
    if int8_only and not args.int8:
        raise UsageError(f"{' and '.join(int8_only)} apply to INT8 exports: add --int8, or leave them out")
    if args.int8 and args.calibration_images is None:
        raise UsageError("--int8 needs calibration crops: add --calibration-images DIR (a folder of a few hundred "
                         "person crops like the ones the model will embed)")
    if args.max_map_drop < 0:
        raise UsageError(f"--max-map-drop {args.max_map_drop}: expected a number of mAP points >= 0")


def cmd_serve(args: argparse.Namespace) -> int:
    from trytry_reid.serving.app import serve

    serve(args.index, model_file(args), args.host, args.port, eval_run=args.eval_run, engine=args.engine)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from trytry_reid.jobs.zoo_import import format_summary, run_import
    from trytry_reid.models.zoo_file import ImportOptions

    options = ImportOptions(arch=args.arch, height=args.height, width=args.width, pooling=args.pooling,
                            last_stride=args.last_stride)
    print(format_summary(run_import(args.peer, args.file, args.out, options, overwrite=args.overwrite)))
    return 0
