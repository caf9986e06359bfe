"""Every command, fed the bad inputs users type: exit status 2, the reason in one line (argparse's usage and
error for a malformed flag), never a traceback. One parametrised test per command; a last test checks that
every command of the COMMANDS table has its cases."""

from __future__ import annotations

import pytest

from trytry_reid.engine.checkpoint import load_checkpoint, save_checkpoint
from trytry_reid.jobs.cli import COMMANDS
from trytry_reid.jobs.cli import main as cli_main
from trytry_reid.jobs.config import load_config, to_dict

from conftest import REPO
from data_fixtures import make_market_tree, write_image
from test_export import write_images, write_tiny_checkpoint


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> dict[str, str]:
    """The files the cases name: a calibrated small checkpoint storing a complete config (its test set a
    miniature Market tree), another model's
    checkpoint, an index, good / tiny / text images, an empty folder."""
    root = tmp_path_factory.mktemp("bad-inputs")
    checkpoint = write_tiny_checkpoint(root / "best.pt", backbone="small_cnn")
    state = load_checkpoint(checkpoint)
    config = to_dict(load_config(REPO / "config" / "demo_digits.yml"))
    config["model"], config["data"] = {**config["model"], **state["config"]["model"]}, \
        {**config["data"], **state["config"]["data"]}
    config["test"]["datasets"] = [{"name": "market1501", "root": str(make_market_tree(root / "market")),
                                   "label": "mini"}]          # a test set of a few images: rank runs in a second
    state.update(config=config, calibration={"metric": "cosine", "target_fpr": 0.1, "threshold": 0.3,
                                              "fpr": 0.1, "tpr": 0.8})
    save_checkpoint(state, checkpoint, keep=0)
    gallery = write_images(root / "gallery", 6)
    tiny = write_image(root / "tiny" / "0001_c1s1_000001_00.png", (5, 6, 7), size=(3, 3))
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not an image, not a checkpoint\n")
    assert cli_main(["index", "--checkpoint", str(checkpoint), "--images", str(root / "gallery"), "--out",
                     str(root / "index"), "--workers", "0"]) == 0
    return {"ckpt": str(checkpoint), "other": str(write_tiny_checkpoint(root / "other.pt", seed=1,
                                                                        backbone="small_cnn")),
            "index": str(root / "index"), "gallery": str(root / "gallery"), "good": str(gallery[0]),
            "tiny": str(tiny), "tinydir": str(tiny.parent), "folder": str(root / "gallery"),
            "empty": str(root / "empty"), "text": str(root / "notes.txt"), "missing": str(root / "absent.pt"),
            "out": str(root / "out" / "f.npz"), "demo": str(REPO / "config" / "demo_digits.yml")}


def run_bad(place: dict[str, str], capsys, command: str, args: list[str], message: str) -> None:
    argv = [command, *(arg.format(**place) for arg in args)]
    try:
        code = cli_main(argv)
    except SystemExit as stop:          # argparse refusing a malformed flag
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert "Traceback" not in err and message.format(**place) in err, (argv, err)
    ours = [line for line in err.splitlines() if line.startswith(f"trytry-reid {command}: error:")]
    assert len(ours) == 1, err


def cases(*items: tuple[list[str], str]):
    return pytest.mark.parametrize("args, message", items, ids=[" ".join(a)[:60] for a, _ in items])


@cases((["--config", "{missing}"], "config file not found"),
       (["--config", "{demo}", "train.epochs=0"], "config key 'train.epochs' = 0: expected a positive number"),
       (["--config", "{demo}", "train.bogus=1"], "unknown config key 'train.bogus'"),
       (["--config", "{demo}", "--resume", "{missing}"], "does not exist"),
       (["--config", "{demo}", "data.name=folder", "data.root={empty}"], "does not exist"))
def test_train(place, capsys, args, message):
    run_bad(place, capsys, "train", args, message)


@cases((["--checkpoint", "{folder}"], "is a folder, not a checkpoint file"),
       (["--checkpoint", "{text}"], "is not a torch checkpoint"),
       (["--features", "{missing}"], "not found"),
       (["--features", "{text}", "--checkpoint", "{ckpt}"], "either --features or --checkpoint"),
       (["--checkpoint", "{ckpt}", "test.batch_size=0"], "test.batch_size=0 on the command line"))
def test_evaluate(place, capsys, args, message):
    run_bad(place, capsys, "evaluate", args, message)


@cases((["--checkpoint", "{ckpt}", "--open-set-drop", "1.5"], "--open-set-drop 1.5: expected a fraction"),
       (["--checkpoint", "{ckpt}", "--open-set-drop", "nan"], "expected a fraction in [0, 1)"),
       (["--checkpoint", "{ckpt}", "test.calibration_fpr=2"], "test.calibration_fpr=2 on the command line"),
       (["--checkpoint", "{missing}"], "checkpoint not found"))
def test_calibrate(place, capsys, args, message):
    run_bad(place, capsys, "calibrate", args, message)


@cases((["--checkpoint", "{ckpt}", "{good}", "{missing}"], "image not found"),
       (["--checkpoint", "{ckpt}", "{good}", "{folder}"], "is a folder, not an image file"),
       (["--checkpoint", "{ckpt}", "{good}", "{tiny}"], "3x3 pixels is below the minimum crop size"),
       (["--checkpoint", "{ckpt}", "{good}", "{text}"], "cannot read image"),
       (["--checkpoint", "{ckpt}", "{good}", "{good}", "--threshold", "3"], "cosine distance in [0, 2]"),
       (["--checkpoint", "{ckpt}", "{good}", "{good}", "--threshold", "none"], "--threshold none gives none"),
       (["--checkpoint", "{good}", "{good}", "{good}"], "is not a torch checkpoint: it is a JPEG image"))
def test_verify(place, capsys, args, message):
    run_bad(place, capsys, "verify", args, message)


EXTRACT = ["--checkpoint", "{ckpt}", "--out", "{out}", "--workers", "0"]


@cases(([*EXTRACT, "--images", "{missing}"], "does not exist or is not a directory"),
       ([*EXTRACT, "--images", "{empty}"], "no images"),
       ([*EXTRACT, "--images", "{tinydir}"], "3x3 pixels is below the minimum crop size"),
       ([*EXTRACT, "--images", "{gallery}", "--batch-size", "0"], "expected an integer >= 1, got '0'"),
       ([*EXTRACT, "--images", "{gallery}", "--workers", "-1"], "expected an integer >= 0, got '-1'"),
       ([*EXTRACT, "--images", "{gallery}", "--checkpoint", "{text}"], "is not a torch checkpoint"))
def test_extract(place, capsys, args, message):
    run_bad(place, capsys, "extract", args, message)


@cases((["--checkpoint", "{ckpt}", "--images", "{gallery}", "--out", "{index}", "--nlist", "0"], ">= 1, got '0'"),
       (["--checkpoint", "{other}", "--images", "{gallery}", "--out", "{index}"], "other weights"),
       (["--checkpoint", "{ckpt}", "--images", "{gallery}", "--out", "{empty}/ivf", "--backend", "faiss-ivf",
         "--nlist", "1000"], "needs at least 1000 vectors"),
       (["--checkpoint", "{ckpt}", "--images", "{gallery}", "--out", "{index}", "--backend", "annoy"],
        "invalid choice: 'annoy'"))
def test_index(place, capsys, args, message):
    if "faiss-ivf" in args:
        pytest.importorskip("faiss")
    run_bad(place, capsys, "index", args, message)


@cases((["--index", "{index}", "--query", "{good}", "--top-k", "0"], "expected an integer >= 1, got '0'"),
       (["--index", "{index}", "--query", "{good}", "--top-k", "-1"], "expected an integer >= 1, got '-1'"),
       (["--index", "{missing}", "--query", "{good}"], "is not a gallery index"),
       (["--index", "{index}", "--query", "{tiny}"], "below the minimum crop size"),
       (["--index", "{index}", "--query", "{missing}"], "cannot read image"),
       (["--index", "{index}", "--query", "{good}", "--threshold", "x"], "threshold must be 'auto', 'none'"),
       (["--index", "{index}", "--query", "{good}", "--checkpoint", "{other}"], "other weights"))
def test_search(place, capsys, args, message):
    run_bad(place, capsys, "search", args, message)


@cases((["--checkpoint", "{ckpt}", "--num", "0"], "expected an integer >= 1, got '0'"),
       (["--checkpoint", "{ckpt}", "--top-k", "-3"], "expected an integer >= 1, got '-3'"),
       (["--checkpoint", "{ckpt}", "--queries", "names", "--names", "nobody.png"], "query names not found"),
       (["--checkpoint", "{ckpt}", "--queries", "names"], "needs the file names of the queries to draw"),
       (["--checkpoint", "{missing}"], "checkpoint not found"))
def test_rank(place, capsys, args, message):
    run_bad(place, capsys, "rank", args, message)


@cases((["--checkpoint", "{ckpt}", "--max-ids", "0"], "expected an integer >= 1, got '0'"),
       (["--checkpoint", "{missing}"], "checkpoint not found"),
       (["--checkpoint", "{ckpt}", "test.tsne_max_ids=0"], "on the command line"))
def test_tsne(place, capsys, args, message):
    run_bad(place, capsys, "tsne", args, message)


@cases((["--checkpoint", "{missing}", "--out", "{empty}/m.onnx"], "checkpoint not found"),
       (["--checkpoint", "{text}", "--out", "{empty}/m.onnx"], "is not a torch checkpoint"),
       (["--checkpoint", "{ckpt}", "--out", "{empty}/m.onnx", "--check-images", "{missing}"], "does not exist"))
def test_export(place, capsys, args, message):
    pytest.importorskip("onnx")
    run_bad(place, capsys, "export", args, message)


@cases((["--index", "{index}", "--port", "70000"], "expected an integer in [0, 65535], got '70000'"),
       (["--index", "{missing}"], "is not a gallery index"),
       (["--index", "{index}", "--checkpoint", "{other}"], "other weights"))
def test_serve(place, capsys, args, message):
    run_bad(place, capsys, "serve", args, message)


@cases((["--from", "torchreid", "{missing}", "--out", "{empty}/m.pt"], "model file not found"),
       (["--from", "torchreid", "{text}", "--out", "{empty}/m.pt"], "with torch.load(weights_only=True)"),
       (["--from", "caffe", "{text}", "--out", "{empty}/m.pt"], "invalid choice: 'caffe'"),
       (["--from", "torchreid", "{ckpt}", "--out", "{empty}/m.pt"], "not a torchreid model this project can import"),
       (["--from", "fastreid", "{ckpt}", "--height", "0", "--out", "{empty}/m.pt"], "expected a positive number"))
def test_import(place, capsys, args, message):
    run_bad(place, capsys, "import", args, message)


def test_every_command_has_bad_input_cases():
    tested = {name.removeprefix("test_") for name, value in globals().items()
              if name.startswith("test_") and hasattr(value, "pytestmark")}
    assert tested == set(COMMANDS)
