"""Inference engines (torch, onnx, openvino): one metadata contract, the same features, files refused when they
lack the contract, missing packages named with their extra; extract / index / search / serve with --engine."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from trytry_reid.jobs import cli
from trytry_reid.jobs.cli import main as cli_main
from trytry_reid.serving.embedder import Embedder
from trytry_reid.serving.inference import load_model
from trytry_reid.serving.runtimes import MissingExtraError, ModelFileError, open_onnx, open_openvino

from test_export import write_images, write_tiny_checkpoint

PARITY = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A calibrated tiny checkpoint, its crops, and its fp32 ONNX and OpenVINO exports."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from test_embedder import calibrate_on_images

    from trytry_reid.jobs.calibrate import store_in_checkpoint
    from trytry_reid.serving.export import export_onnx
    from trytry_reid.serving.export_openvino import export_openvino

    root = tmp_path_factory.mktemp("engines")
    checkpoint = write_tiny_checkpoint(root / "tiny.pt")
    images = write_images(root / "crops", 12, seed=5)
    store_in_checkpoint(checkpoint, calibrate_on_images(checkpoint, images))
    loaded = load_model(checkpoint)
    return {"root": root, "checkpoint": checkpoint, "images": images, "loaded": loaded,
            "onnx": export_onnx(loaded, root / "tiny.onnx"), "openvino": export_openvino(loaded, root / "tiny.xml")}


def test_openvino_matches_pytorch_and_carries_the_contract(exported):
    from trytry_reid.serving.export_check import check_fp32

    report = check_fp32(open_openvino(exported["openvino"]), exported["loaded"], exported["images"])
    assert report["max_abs_diff"] <= PARITY and report["top10_equivalent"] == 1.0
    images, loaded = exported["images"], exported["loaded"]
    reference = Embedder.from_checkpoint(exported["checkpoint"]).embed(images)
    for embedder in (Embedder.from_openvino(exported["openvino"], batch_size=5), Embedder.from_onnx(exported["onnx"])):
        assert embedder.threshold == loaded.calibration["threshold"] and embedder.dim == 32
        assert (embedder.height, embedder.width) == (loaded.height, loaded.width)
        assert np.abs(embedder.embed(images) - reference).max() <= PARITY
    contract = open_openvino(exported["openvino"]).contract
    assert contract.precision == "fp32" and contract.mean == loaded.mean and contract.std == loaded.std


def test_an_openvino_model_without_our_metadata_is_refused(exported, tmp_path):
    import openvino

    bare = openvino.convert_model(str(exported["onnx"]))
    openvino.save_model(bare, str(tmp_path / "bare.xml"), compress_to_fp16=False)
    with pytest.raises(ModelFileError, match=r"OpenVINO model .*bare.xml lacks metadata \['input_name'"):
        Embedder.from_openvino(tmp_path / "bare.xml")
    with pytest.raises(ModelFileError, match=r"expected the IR's .xml"):
        Embedder.from_openvino(exported["openvino"].with_suffix(".bin"))


@pytest.mark.parametrize("module, extra, opener", [("openvino", "openvino", open_openvino),
                                                   ("onnxruntime", "export", open_onnx)])
def test_a_missing_package_names_the_extra(monkeypatch, exported, module, extra, opener):
    monkeypatch.setitem(sys.modules, module, None)                       # makes `import module` fail
    path = exported["openvino" if module == "openvino" else "onnx"]
    with pytest.raises(MissingExtraError, match=rf"pip install 'trytry-reid\[{extra}\]'"):
        opener(path)


def test_flag_choices_are_the_catalogs():
    from trytry_reid.serving.export_formats import EXPORT_FORMATS
    from trytry_reid.serving.runtimes import ENGINES

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices

    def choices(command: str, flag: str) -> list[str]:
        return list(next(a for a in commands[command]._actions if flag in a.option_strings).choices)

    assert choices("export", "--format") == list(EXPORT_FORMATS)
    for command in ("extract", "index", "serve"):
        assert choices(command, "--engine") == list(ENGINES)


def test_extract_with_each_engine_gives_the_same_features(exported, tmp_path):
    folder = str(exported["images"][0].parent)
    runs = {"torch": ["--checkpoint", str(exported["checkpoint"])],
            "onnx": ["--engine", "onnx", "--model", str(exported["onnx"])],
            "openvino": ["--engine", "openvino", "--model", str(exported["openvino"])]}
    features = {}
    for engine, flags in runs.items():
        out = tmp_path / f"{engine}.npz"
        assert cli_main(["extract", *flags, "--images", folder, "--out", str(out), "--workers", "0"]) == 0
        features[engine] = np.load(out)["features"]
    assert np.abs(features["onnx"] - features["torch"]).max() <= PARITY
    assert np.abs(features["openvino"] - features["torch"]).max() <= PARITY


def test_engine_flags_are_checked(exported, tmp_path, capsys):
    base = ["extract", "--images", str(exported["images"][0].parent), "--out", str(tmp_path / "f.npz")]
    assert cli_main([*base, "--engine", "onnx", "--checkpoint", str(exported["checkpoint"])]) == 2
    assert "pass it as --model" in capsys.readouterr().err
    assert cli_main([*base, "--engine", "openvino"]) == 2
    assert "--engine openvino needs --model FILE" in capsys.readouterr().err
    assert cli_main([*base, "--engine", "onnx", "--model", str(exported["openvino"])]) == 2
    assert not (tmp_path / "f.npz").exists()


def test_an_index_built_with_onnx_is_searched_with_it_and_keeps_int8_out(exported, tmp_path, capsys):
    import onnx

    from trytry_reid.serving.index import weights_sha256

    index = tmp_path / "idx"
    folder, query = str(exported["images"][0].parent), str(exported["images"][3])
    assert cli_main(["index", "--engine", "onnx", "--model", str(exported["onnx"]), "--images", folder,
                     "--out", str(index), "--workers", "0"]) == 0
    info = json.loads((index / "index.json").read_text())["info"]
    assert info["engine"] == "onnx" and info["precision"] == "fp32" and info["model"] == str(exported["onnx"])
    assert info["weights_sha256"] == weights_sha256(exported["loaded"].model)
    capsys.readouterr()
    assert cli_main(["search", "--index", str(index), "--query", query, "--top-k", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[-1].endswith(exported["images"][3].name)
    # the same weights through PyTorch extend it (fp32 features agree within 1e-4)...
    assert cli_main(["index", "--checkpoint", str(exported["checkpoint"]), "--images", folder,
                     "--out", str(index), "--workers", "0"]) == 0
    # ...an INT8 model of them does not: its features are not interchangeable with fp32 ones
    proto = onnx.load(str(exported["onnx"]))
    for prop in proto.metadata_props:
        if prop.key == "precision":
            prop.value = "int8"
    onnx.save(proto, str(tmp_path / "int8.onnx"))
    assert cli_main(["index", "--engine", "onnx", "--model", str(tmp_path / "int8.onnx"), "--images", folder,
                     "--out", str(index), "--workers", "0"]) == 2
    assert "(fp32 features, not int8)" in capsys.readouterr().err


def test_an_int8_index_is_extended_by_its_own_file_only(exported, tmp_path, capsys):
    """Two INT8 files of the same weights (another engine, other calibration crops) quantize differently:
    only the file an INT8 index was built with may extend it."""
    import onnx

    folder = str(exported["images"][0].parent)
    for name, calibrated_on in (("a.onnx", "crops A"), ("b.onnx", "crops B")):
        proto = onnx.load(str(exported["onnx"]))
        onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, "precision": "int8",
                                            "calibrated_on": calibrated_on})
        onnx.save(proto, str(tmp_path / name))
    index = ["--images", folder, "--out", str(tmp_path / "idx"), "--workers", "0"]
    assert cli_main(["index", "--engine", "onnx", "--model", str(tmp_path / "a.onnx"), *index]) == 0
    assert cli_main(["index", "--engine", "onnx", "--model", str(tmp_path / "a.onnx"), *index]) == 0
    capsys.readouterr()
    assert cli_main(["index", "--engine", "onnx", "--model", str(tmp_path / "b.onnx"), *index]) == 2
    assert "another INT8 file" in capsys.readouterr().err


def test_serve_with_an_engine_but_no_model_is_refused(exported, tmp_path, capsys):
    from trytry_reid.serving.index import index_folder

    index_folder(open_openvino(exported["openvino"]), exported["images"][0].parent, tmp_path / "idx",
                 progress=False)
    assert cli_main(["serve", "--index", str(tmp_path / "idx"), "--engine", "onnx"]) == 2
    assert "--engine onnx needs --model" in capsys.readouterr().err


def test_the_app_serves_an_exported_model(exported, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from trytry_reid.serving.app import create_app
    from trytry_reid.serving.index import index_folder

    model = open_openvino(exported["openvino"])
    index_folder(model, exported["images"][0].parent, tmp_path / "idx", progress=False)
    client = TestClient(create_app(tmp_path / "idx", model))
    query = exported["images"][5]
    answer = client.post("/api/search", files={"image": (query.name, query.read_bytes(), "image/jpeg")},
                         data={"k": "3"}).json()
    assert answer["results"][0]["name"] == query.name and answer["results"][0]["distance"] < 1e-4
    assert answer["threshold"]["threshold"] == pytest.approx(exported["loaded"].calibration["threshold"])


def test_a_file_whose_metadata_names_another_resize_filter_fails_its_check(exported):
    """The check compares the file's contract with the checkpoint's, resize filter included: a bicubic file
    of a bilinear model would embed other pixels in the Embedder and serve while passing on pre-sized inputs."""
    from dataclasses import replace

    from trytry_reid.serving.export_check import ExportCheckError, check_metadata
    from trytry_reid.serving.model_metadata import preprocessing
    from trytry_reid.serving.runtimes import contract_from_metadata

    model = open_onnx(exported["onnx"])
    check_metadata(model, exported["loaded"])
    model.contract = replace(model.contract, interpolation="bicubic")
    with pytest.raises(ExportCheckError, match="interpolation"):
        check_metadata(model, exported["loaded"])
    meta = {**preprocessing(exported["loaded"]), "interpolation": "nearest"}
    with pytest.raises(ModelFileError, match="interpolation 'nearest'"):
        contract_from_metadata(meta, "file m.onnx")


def test_the_int8_accuracy_gate_fails_when_there_is_no_map(monkeypatch):
    """A test set without a query that has a match gives mAP NaN: the gate must fail, not pass (NaN > bound
    is False)."""
    from types import SimpleNamespace

    from trytry_reid.serving import export_check

    row = {"test_set": "mini", "mAP": float("nan"), "mAP_pytorch": float("nan"), "mAP_change_points": float("nan")}
    monkeypatch.setattr(export_check, "accuracy_change", lambda *args, **kwargs: row)
    with pytest.raises(export_check.ExportCheckError, match="no mAP on mini"):
        export_check.check_accuracy(SimpleNamespace(source="m.onnx"), None, [("mini", [], [])], 1.0)


def test_the_embedder_takes_a_thread_count_for_the_exported_engines(exported):
    """A tracker sharing the CPU sets the engines' threads; the features do not change, a bad count is refused."""
    image = exported["images"][0]
    reference = Embedder.from_onnx(exported["onnx"]).embed([image])
    for make, path in ((Embedder.from_onnx, exported["onnx"]), (Embedder.from_openvino, exported["openvino"])):
        assert np.abs(make(path, threads=1).embed([image]) - reference).max() <= PARITY
        with pytest.raises(ValueError, match="threads=0"):
            make(path, threads=0)
