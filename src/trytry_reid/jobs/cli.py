"""Command line: `trytry-reid <command> ...`. Each command parses its flags and calls one job (jobs/commands.py)."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from trytry_reid.errors import ReidError
from trytry_reid.jobs import commands

STORED_CONFIG_HELP = "YAML config file (default: the one stored in --checkpoint, test sets included)"


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (a bad value is a one-line usage error, exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            bound = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"expected {bound}, got {text!r}")
        return value
    parse.__name__ = "integer"
    return parse


POSITIVE, NON_NEGATIVE = int_at_least(1), int_at_least(0)


def add_config_args(parser: argparse.ArgumentParser, required: bool = False,
                    help_text: str = f"YAML config file (default for train: {commands.DEMO_CONFIG})") -> None:
    parser.add_argument("--config", "-c", type=Path, required=required, help=help_text)
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.epochs=2 data.root=/data/market1501")


def train_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue a run exactly; without a path: <output_dir>/checkpoints/last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run already in output_dir (its checkpoints, logs and metrics are deleted)")
    p.add_argument("--check-data", action="store_true",
                   help="decode every image of every split, report all bad files, and exit")


def evaluate_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p, help_text=STORED_CONFIG_HELP)
    p.add_argument("--checkpoint", type=Path, help="a checkpoint written by train")
    p.add_argument("--features", type=Path, help="an .npz of query/gallery features, pids and camids")
    p.add_argument("--out", type=Path, help="output folder (default: next to the checkpoint or features)")
    p.add_argument("--rank", action="store_true", help="also write ranking figures for each test set")


def rank_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p, help_text=STORED_CONFIG_HELP)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--queries", default="first", choices=["first", "random", "worst", "names"],
                   help="which queries to draw (worst = lowest AP)")
    p.add_argument("--num", type=POSITIVE, default=8, help="number of query rows")
    p.add_argument("--names", nargs="*", default=None, help="query file names, with --queries names")
    p.add_argument("--top-k", type=POSITIVE, default=10)
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="seed for --queries random")
    p.add_argument("--out", type=Path, help="output folder (default: <checkpoint run>/figures)")


def tsne_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p, help_text=STORED_CONFIG_HELP)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--max-ids", type=POSITIVE, default=20, help="identities drawn (a seeded sample)")
    p.add_argument("--thumbnails", action="store_true", help="draw image thumbnails at the points")
    p.add_argument("--out", type=Path, help="output folder (default: <checkpoint run>/figures)")


def calibrate_arguments(p: argparse.ArgumentParser) -> None:
    add_config_args(p, help_text=STORED_CONFIG_HELP)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, help="output folder (default: <checkpoint run>/calibration)")
    p.add_argument("--no-store", action="store_true", help="measure only; leave the checkpoint unchanged")
    p.add_argument("--open-set-drop", type=float, default=0.5, metavar="FRACTION",
                   help="open-set DIR@FAR with this fraction of the gallery identities dropped (0: skip)")


def verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("images", nargs=2, type=Path, metavar="IMAGE", help="two person crops")
    p.add_argument("--threshold", default="auto",
                   help="'auto' (the calibrated one, default) or a cosine distance in [0, 2]")
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")


def add_engine_args(p: argparse.ArgumentParser, checkpoint_help: str = "a checkpoint written by train") -> None:
    """The model that embeds: a checkpoint (PyTorch), or an exported file run by its engine."""
    p.add_argument("--checkpoint", type=Path, help=checkpoint_help)
    p.add_argument("--engine", default="torch", choices=["torch", "onnx", "openvino"],
                   help="what runs the model: torch (--checkpoint), onnx or openvino (--model, from `export`)")
    p.add_argument("--model", type=Path, help="the exported model for --engine onnx (.onnx) or openvino (.xml)")


def add_folder_args(p: argparse.ArgumentParser, out_help: str) -> None:
    """A model applied to a folder of crops, batched."""
    add_engine_args(p)
    p.add_argument("--images", type=Path, required=True, help="folder searched recursively")
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument("--batch-size", type=POSITIVE, default=128)
    p.add_argument("--workers", type=NON_NEGATIVE, default=2)
    p.add_argument("--on-bad-image", default="error", choices=["error", "skip"],
                   help="an unreadable image: stop naming it (error), or log, count and leave it out (skip)")
    p.add_argument("--max-bad-images", type=NON_NEGATIVE, default=100, help="with skip: stop when more are bad")


def extract_arguments(p: argparse.ArgumentParser) -> None:
    add_folder_args(p, "output .npz")


def index_arguments(p: argparse.ArgumentParser) -> None:
    add_folder_args(p, "index folder")
    p.add_argument("--backend", default="numpy", choices=["numpy", "faiss", "faiss-ivf"],
                   help="exact search (numpy or faiss, identical results) or approximate (faiss-ivf)")
    p.add_argument("--nlist", type=POSITIVE, default=1024, help="faiss-ivf: number of clusters")
    p.add_argument("--nprobe", type=POSITIVE, default=16, help="faiss-ivf: clusters visited per query")


def search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--query", type=Path, required=True)
    p.add_argument("--top-k", type=POSITIVE, default=10, help="number of results (at most the gallery's size)")
    p.add_argument("--checkpoint", type=Path, help="default: the checkpoint the index was built with")
    p.add_argument("--figure", type=Path, help="also write the ranking as a PNG")
    p.add_argument("--threshold", default="auto",
                   help="'auto' (the checkpoint's calibrated threshold, when it has one), 'none', or a "
                        "cosine distance: results beyond it are flagged, no result within it = unknown")
    p.add_argument("--json", action="store_true", help="print one JSON object, the API's fields (for scripts)")


def export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--format", default="onnx", choices=["onnx", "openvino"],
                   help="onnx (a .onnx file, onnxruntime) or openvino (NAME.xml + NAME.bin)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--check-images", type=Path, help="folder of real images for the parity check")
    p.add_argument("--int8", action="store_true",
                   help="quantize to INT8 (static, calibrated on --calibration-images); checked on the test sets")
    p.add_argument("--calibration-images", type=Path, metavar="DIR",
                   help="with --int8: person crops like the ones the model will embed (at least 100)")
    p.add_argument("--calibration-count", type=int, default=300, metavar="N",
                   help="with --int8: crops used for calibration, spread over the folder")
    p.add_argument("--check-config", type=Path, metavar="FILE",
                   help="with --int8: a config whose test sets measure the mAP change (default: the checkpoint's)")
    p.add_argument("--max-map-drop", type=float, default=1.0, metavar="POINTS",
                   help="with --int8: fail when mAP drops by more than this many points on any test set")


def serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", type=Path, required=True)
    add_engine_args(p, "default: the model the index was built with (and its engine)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int_at_least(0, 65535), default=8000)
    p.add_argument("--eval-run", type=Path, help="a ranking JSON (from rank/evaluate --rank) to browse")


def import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="peer", required=True, choices=["torchreid", "fastreid"],
                   help="the toolkit that wrote FILE")
    p.add_argument("file", type=Path, metavar="FILE", help="its model file (.pth, .pth.tar)")
    p.add_argument("--out", type=Path, required=True, help="the checkpoint to write (.pt)")
    p.add_argument("--arch", help="the architecture (default: read from the file's keys); docs/MODEL_ZOO.md")
    p.add_argument("--height", type=int, help="input height the model was trained at (default: the peer's)")
    p.add_argument("--width", type=int, help="input width (default: the peer's)")
    p.add_argument("--pooling", choices=["avg", "gem", "max"],
                   help="fast-reid: the pooling, when the file holds no GeM p (default: its zoo's convention)")
    p.add_argument("--last-stride", type=int, choices=[1, 2], help="default: the peer's for this architecture")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


class Command(NamedTuple):
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]  # adds the command's flags
    run: Callable[[argparse.Namespace], int | None]  # commands.cmd_<name>: reads the flags, calls the job


# Every command, in the order `--help` lists them: the one table the parser and the dispatch are built from.
COMMANDS: dict[str, Command] = {
    "train": Command("train a model (the default command of main.py)", train_arguments, commands.cmd_train),
    "evaluate": Command("rank each test set's gallery for its queries; write metrics.json", evaluate_arguments,
                        commands.cmd_evaluate),
    "calibrate": Command("measure same-person verification (ROC, AUC, EER, TPR@FPR) and open-set search on the "
                         "test sets; store the threshold in the checkpoint", calibrate_arguments,
                         commands.cmd_calibrate),
    "verify": Command("same person or not: the distance of two crops against the threshold", verify_arguments,
                      commands.cmd_verify),
    "extract": Command("features for a folder of person crops -> .npz", extract_arguments, commands.cmd_extract),
    "index": Command("build (or extend) a gallery index from a folder of crops", index_arguments,
                     commands.cmd_index),
    "search": Command("rank an index's gallery for one query image", search_arguments, commands.cmd_search),
    "rank": Command("draw ranking grids: each query with its top-k gallery images", rank_arguments,
                    commands.cmd_rank),
    "tsne": Command("t-SNE map of the test features, coloured by identity", tsne_arguments, commands.cmd_tsne),
    "export": Command("export the embedding model (ONNX) and check it with onnxruntime", export_arguments,
                      commands.cmd_export),
    "serve": Command("web page + HTTP API to search a gallery index", serve_arguments, commands.cmd_serve),
    "import": Command("a torchreid or fast-reid model file -> a checkpoint of this project", import_arguments,
                      commands.cmd_import),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trytry-reid", description="Train, evaluate and use person "
                                     "re-identification models. `trytry-reid COMMAND --help` for each command.")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging; tracebacks of every error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.arguments(sub.add_parser(name, help=command.help))
    return parser


OVERRIDE = re.compile(r"[A-Za-z_][\w.\[\]]*=.*", re.DOTALL)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; ``key=value`` overrides may come anywhere after the command, flags included
    (argparse alone takes them only in one run: ``train a=1 --check-data b=2`` would reject ``b=2``)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    late = [item for item in extra if OVERRIDE.fullmatch(item)]
    unknown = [item for item in extra if not OVERRIDE.fullmatch(item)]
    if unknown or (late and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or late)}")
    resume = getattr(args, "resume", None)
    if resume not in (None, "auto") and OVERRIDE.fullmatch(resume) and not Path(resume).exists():
        late.insert(0, resume)      # `--resume train.epochs=3`: a bare --resume, then an override
        args.resume = "auto"
    if late:
        args.overrides = [*args.overrides, *late]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. Bad input (the project's own errors, and file-system errors) is one line and exit
    status 2; SIGINT / SIGTERM stop the command (after the file being written, if any) with one line and exit
    status 128 + signal (130, 143); any other exception is a bug and keeps its traceback."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from trytry_reid.engine.signals import ImmediateStop, StopRequest, interrupted_message

    try:
        with StopRequest(graceful=False):
            return COMMANDS[args.command].run(args) or 0
    except ImmediateStop as stop:
        print(interrupted_message(args.command, stop.signum), file=sys.stderr)
        return 128 + stop.signum
    except (ReidError, OSError) as err:
        if args.verbose:
            raise
        print(f"trytry-reid {args.command}: error: {own_message(err)}\n(run with --verbose for the traceback)",
              file=sys.stderr)
        return 2


def own_message(error: BaseException) -> str:
    """The error's own message. An error raised in a DataLoader worker reaches the main process with the
    worker's traceback in its message ("Caught X in DataLoader worker process N. Original Traceback ...");
    its last line is what the worker raised ("module.X: message"), and only the message is kept."""
    text = str(error)
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    name = type(error).__name__
    return last.split(f"{name}: ", 1)[1] if f"{name}: " in last else last


if __name__ == "__main__":
    sys.exit(main())
