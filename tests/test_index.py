"""Gallery index and search: both exact backends equal a brute-force ranking written from the definition;
folders of crops listed, labelled from Market-style names and embedded into the index's input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trytry_reid.evaluation.feature_file import FeatureSet, load_features, save_features
from trytry_reid.serving.folder_images import extract_folder, find_images, folder_records, parse_market_name
from trytry_reid.serving.index import GalleryIndex
from trytry_reid.serving.search import recall_at_k

from conftest import MARKET_DEVSPLIT, require

try:
    import faiss  # noqa: F401
except ImportError:
    faiss = None
needs_faiss = pytest.mark.skipif(faiss is None, reason="faiss-cpu is not installed (the 'search' extra)")
EXACT = ["numpy", pytest.param("faiss", marks=needs_faiss)]


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def tied_rows(n: int, d: int, seed: int) -> np.ndarray:
    """Entries +-1/sqrt(d) with d a power of 4: exact unit vectors whose dot products tie a lot, exactly."""
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, d))
    return (signs / np.sqrt(d)).astype(np.float32)


def brute_force(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query: sort every gallery id by (1 - dot product in float64, id); plain loops."""
    ids, dists = [], []
    for q in queries.astype(np.float64):
        scored = sorted((1.0 - float(np.dot(q, g.astype(np.float64))), j) for j, g in enumerate(gallery))
        dists.append([d for d, _ in scored[:k]])
        ids.append([j for _, j in scored[:k]])
    return np.array(dists), np.array(ids)


def build(features: np.ndarray, backend: str, **options) -> GalleryIndex:
    index = GalleryIndex(features.shape[1], backend, **options)
    index.add(features, [f"img{i}.jpg" for i in range(len(features))])
    return index


@pytest.mark.parametrize("backend", EXACT)
@pytest.mark.parametrize("make", [unit_rows, tied_rows], ids=["random", "ties"])
def test_exact_search_equals_brute_force(backend, make):
    gallery = make(600, 16, seed=1)
    queries = np.concatenate([make(25, 16, seed=2), gallery[:5]])   # include exact gallery copies
    expected_d, expected_ids = brute_force(gallery, queries, k=12)
    distances, ids = build(gallery, backend).search(queries, k=12)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(distances, expected_d, atol=1e-6)
    assert distances.dtype == np.float32 and ids.dtype == np.int64


@pytest.mark.parametrize("backend", EXACT)
def test_a_tie_block_longer_than_the_candidate_list_keeps_the_smallest_ids(backend):
    # 16-d sign vectors: the 40th best score sits in a block of ~80 equal scores, longer than the
    # 2k + 16 candidates a backend proposes, so the exact fallback must pick the smallest ids.
    gallery = tied_rows(3000, 16, seed=1)
    queries = tied_rows(10, 16, seed=2)
    np.testing.assert_array_equal(build(gallery, backend).search(queries, 40)[1],
                                  brute_force(gallery, queries, 40)[1])


@needs_faiss
def test_both_exact_backends_give_identical_results():
    gallery, queries = unit_rows(5000, 64, seed=3), unit_rows(300, 64, seed=4)
    d_np, i_np = build(gallery, "numpy").search(queries, 10)
    d_fa, i_fa = build(gallery, "faiss").search(queries, 10)
    np.testing.assert_array_equal(i_np, i_fa)
    np.testing.assert_array_equal(d_np, d_fa)


def test_numpy_backend_scans_the_gallery_in_several_chunks(monkeypatch):
    import trytry_reid.serving.search as search

    monkeypatch.setattr(search, "_CHUNK_ELEMENTS", 4 * 70)   # 4 queries -> 70 gallery rows per chunk
    gallery, queries = tied_rows(500, 16, seed=5), tied_rows(4, 16, seed=6)
    _, expected_ids = brute_force(gallery, queries, k=9)
    np.testing.assert_array_equal(build(gallery, "numpy").search(queries, 9)[1], expected_ids)


@pytest.mark.parametrize("backend", EXACT)
def test_add_in_pieces_equals_one_build(backend):
    gallery, queries = unit_rows(3000, 32, seed=7), unit_rows(40, 32, seed=8)
    grown = GalleryIndex(32, backend)
    for start, stop in [(0, 1), (1, 700), (700, 2100), (2100, 3000)]:
        grown.add(gallery[start:stop], [f"img{i}.jpg" for i in range(start, stop)])
    whole = build(gallery, backend)
    assert len(grown) == 3000 and grown.paths == whole.paths
    np.testing.assert_array_equal(grown.features, gallery)
    for a, b in zip(grown.search(queries, 15), whole.search(queries, 15)):
        np.testing.assert_array_equal(a, b)


def test_k_larger_than_the_gallery_returns_every_item():
    gallery = unit_rows(7, 8, seed=9)
    distances, ids = build(gallery, "numpy").search(gallery[:2], k=50)
    assert ids.shape == (2, 7) and sorted(ids[0]) == list(range(7)) and ids[0, 0] == 0
    assert distances[0, 0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("backend", EXACT + [pytest.param("faiss-ivf", marks=needs_faiss)])
def test_save_load_round_trip(backend, tmp_path):
    gallery, queries = unit_rows(2000, 16, seed=10), unit_rows(30, 16, seed=11)
    options = {"nlist": 16, "nprobe": 4} if backend == "faiss-ivf" else {}
    index = build(gallery, backend, **options)
    index.info = {"checkpoint": "/runs/a/best.pt"}
    index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["count"] == 2000 and meta["backend"] == backend and meta["paths"][3] == "img3.jpg"
    loaded = GalleryIndex.load(tmp_path / "idx")
    assert loaded.paths == index.paths and loaded.info == index.info and loaded.options == options
    for a, b in zip(loaded.search(queries, 10), index.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    loaded.add(gallery[:3], ["x.jpg", "y.jpg", "z.jpg"])          # still extendable after loading
    assert len(loaded) == 2003 and loaded.search(gallery[:1], 2)[1][0].tolist() == [0, 2000]


@needs_faiss
def test_a_saved_index_loads_with_another_backend(tmp_path):
    gallery, queries = unit_rows(800, 16, seed=12), unit_rows(20, 16, seed=13)
    build(gallery, "faiss").save(tmp_path / "idx")
    via_numpy = GalleryIndex.load(tmp_path / "idx", backend="numpy")
    assert via_numpy.backend_name == "numpy"
    np.testing.assert_array_equal(via_numpy.search(queries, 5)[1], brute_force(gallery, queries, 5)[1])


@needs_faiss
def test_ivf_scanning_every_list_is_exact_and_fewer_lists_lose_recall():
    gallery, queries = unit_rows(4000, 32, seed=14), unit_rows(50, 32, seed=15)
    exact_ids = build(gallery, "numpy").search(queries, 10)[1]
    full = build(gallery, "faiss-ivf", nlist=32, nprobe=32).search(queries, 10)[1]
    partial = build(gallery, "faiss-ivf", nlist=32, nprobe=1).search(queries, 10)[1]
    np.testing.assert_array_equal(full, exact_ids)
    assert recall_at_k(full, exact_ids, 10) == 1.0
    assert 0.0 < recall_at_k(partial, exact_ids, 10) < 0.9


def test_recall_at_k_by_hand():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    approx = np.array([[3, 9, 1], [7, 8, -1]])
    assert recall_at_k(approx, exact, k=3) == pytest.approx(2 / 6)
    assert recall_at_k(approx, exact, k=1) == pytest.approx(0.0)


@needs_faiss
def test_ivf_needs_enough_vectors_to_train():
    with pytest.raises(ValueError, match="nlist=64 needs at least 64"):
        build(unit_rows(10, 8, seed=0), "faiss-ivf", nlist=64)


def test_bad_inputs_get_clear_errors(tmp_path):
    index = GalleryIndex(8)
    with pytest.raises(ValueError, match="empty"):
        index.search(unit_rows(1, 8, 0), 3)
    with pytest.raises(ValueError, match=r"shape \[N, 8\]"):
        index.add(unit_rows(2, 9, 0), ["a", "b"])
    with pytest.raises(ValueError, match="one path per row"):
        index.add(unit_rows(2, 8, 0), ["a"])
    with pytest.raises(ValueError, match="L2-normalised"):
        index.add(2 * unit_rows(2, 8, 0), ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.full((1, 8), np.nan, dtype=np.float32), ["a"])
    index.add(unit_rows(3, 8, 0), ["a", "b", "c"])
    for bad_k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            index.search(unit_rows(1, 8, 0), bad_k)
    with pytest.raises(KeyError, match="Valid names: faiss, faiss-ivf, numpy"):
        GalleryIndex(8, "annoy")
    with pytest.raises(FileNotFoundError, match="index.json is missing"):
        GalleryIndex.load(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="expected 'trytry-reid-gallery-index/1'"):
        GalleryIndex.load(tmp_path)


# ---- folders of crops: listing, Market-style names, extraction into the index's input ----

def test_market_style_names_give_pid_and_zero_based_camera():
    assert parse_market_name("0002_c1s1_000451_03.jpg") == (2, 0)
    assert parse_market_name("/any/dir/1501_c6s4_001877_01.png") == (1501, 5)
    assert parse_market_name("-1_c3s2_000000_00.jpg") == (-1, 2)         # Market junk
    assert parse_market_name("0000_c2s1_000001_00.jpg") == (0, 1)        # distractor
    for name in ("person.jpg", "c1_0002.jpg", "0002-c1.jpg", "0002_cam1.jpg"):
        assert parse_market_name(name) == (-1, -1), name


def test_list_images_is_recursive_sorted_and_skips_other_files(tmp_path):
    for rel in ("b/2.jpg", "a/z/1.PNG", "a/0.bmp", "c.jpeg", "notes.txt", "a/z/model.pt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["a/0.bmp", "a/z/1.PNG", "b/2.jpg", "c.jpeg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        find_images(tmp_path / "empty")
    with pytest.raises(NotADirectoryError, match="does not exist"):
        find_images(tmp_path / "absent")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from trytry_reid.serving.inference import load_model

    from test_export import write_tiny_checkpoint

    return load_model(write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt"))


def test_extract_folder_equals_embedding_each_image_and_round_trips(tiny_model, tmp_path):
    import torch
    from PIL import Image

    from test_export import write_images

    images = write_images(tmp_path / "crops" / "day1", 5, seed=4)
    (tmp_path / "crops" / "other.png").write_bytes(images[0].read_bytes())      # a name without labels
    result = extract_folder(tiny_model, tmp_path / "crops", batch_size=2, progress=False)
    expected_paths = sorted(str(p.resolve()) for p in images) + [str((tmp_path / "crops/other.png").resolve())]
    assert result.paths == expected_paths                                   # day1/... sorts before other.png
    assert result.pids.tolist() == [0, 0, 1, 1, 2, -1] and result.camids.tolist() == [0, 1, 0, 2, 1, -1]
    transform = tiny_model.transform()
    with torch.inference_mode():
        expected = tiny_model.model.embed(torch.stack([transform(Image.open(p).convert("RGB"))
                                                        for p in result.paths])).numpy()
    np.testing.assert_allclose(result.features, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(result.features, axis=1), 1.0, atol=1e-6)
    again = load_features(save_features(tmp_path / "out" / "features.npz", {"": result}))[""]
    np.testing.assert_array_equal(again.features, result.features)
    assert again.paths == result.paths and again.pids.tolist() == result.pids.tolist()
    index = GalleryIndex(result.features.shape[1])
    index.add(result.features, result.paths)
    assert index.search(result.features[5:6], 2)[1][0].tolist() == [0, 5]       # same pixels as id 0: tie


def test_feature_files_with_pickled_objects_or_missing_keys_are_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, features=np.zeros((1, 2), np.float32), paths=np.array([{"a": 1}], dtype=object),
             pids=np.zeros(1), camids=np.zeros(1))
    with pytest.raises(ValueError, match="pickle"):
        load_features(path)
    np.savez(path, features=np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['pids', 'camids'\]"):
        load_features(path)


def test_devsplit_folder_labels_match_the_dataset_and_extraction_matches_evaluate(tiny_model, tmp_path):
    from trytry_reid.data.datasets import market1501
    from trytry_reid.evaluation.features import extract_features

    query_dir = require(MARKET_DEVSPLIT / "query")
    splits = market1501(str(MARKET_DEVSPLIT))
    assert [(Path(r.path).name, r.pid, r.camid) for r in folder_records(query_dir)] == \
        [(Path(r.path).name, r.pid, r.camid) for r in splits.query]
    subset = splits.query[:12]
    for record in subset:                                                  # a folder of links, not copies
        (tmp_path / Path(record.path).name).symlink_to(record.path)
    ours = extract_folder(tiny_model, tmp_path, batch_size=5, progress=False)
    theirs = extract_features(tiny_model.model, subset, tiny_model.transform(), batch_size=5, progress=False)
    np.testing.assert_allclose(ours.features, theirs, atol=1e-6)
    assert ours.pids.tolist() == [r.pid for r in subset] and ours.camids.tolist() == [r.camid for r in subset]


def test_index_folder_builds_then_extends_with_only_the_new_images(tiny_model, tmp_path):
    from trytry_reid.serving.folder_images import embed_images
    from trytry_reid.serving.index import index_folder

    from test_export import write_images

    first = write_images(tmp_path / "crops" / "a", 4, seed=6)
    (tmp_path / "m.pt").write_bytes(b"stands for the checkpoint file")
    index, added = index_folder(tiny_model, tmp_path / "crops", tmp_path / "idx", checkpoint=tmp_path / "m.pt",
                                progress=False)
    assert added == 4 and len(index) == 4
    second = write_images(tmp_path / "crops" / "b", 2, seed=7)
    index, added = index_folder(tiny_model, tmp_path / "crops", tmp_path / "idx", progress=False)
    assert added == 2 and len(index) == 6
    assert index.paths == sorted(str(p.resolve()) for p in first) + sorted(str(p.resolve()) for p in second)
    from trytry_reid.serving.index import weights_sha256

    assert index.info == {"checkpoint": str((tmp_path / "m.pt").resolve()),
                          "checkpoint_sha256": before_sha(tmp_path / "m.pt"),
                          "weights_sha256": weights_sha256(tiny_model.model)}
    np.testing.assert_allclose(index.features, embed_images(tiny_model, index.paths), atol=1e-5)
    assert index_folder(tiny_model, tmp_path / "crops", tmp_path / "idx", progress=False)[1] == 0
    GalleryIndex(8).save(tmp_path / "other")
    with pytest.raises(ValueError, match="holds 8-d features but the model gives 32-d"):
        index_folder(tiny_model, tmp_path / "crops", tmp_path / "other", progress=False)


def test_missing_faiss_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)                      # makes `import faiss` fail
    for backend in ("faiss", "faiss-ivf"):
        with pytest.raises(ImportError, match=r"pip install 'trytry-reid\[search\]'.*backend='numpy'"):
            GalleryIndex(8, backend)


def test_extending_an_index_with_another_checkpoint_is_refused(tmp_path):
    import shutil

    from trytry_reid.serving.index import index_folder
    from trytry_reid.serving.inference import load_model

    from test_export import write_images, write_tiny_checkpoint

    first, second = write_tiny_checkpoint(tmp_path / "a.pt", seed=0), write_tiny_checkpoint(tmp_path / "b.pt", seed=1)
    write_images(tmp_path / "crops" / "a", 3, seed=1)
    index_folder(load_model(first), tmp_path / "crops", tmp_path / "idx", checkpoint=first, progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()}
    write_images(tmp_path / "crops" / "b", 2, seed=2)
    with pytest.raises(ValueError, match=rf"index '{tmp_path / 'idx'}' was built with checkpoint "
                                         rf"{first.resolve()} .*not with {second.resolve()}"):
        index_folder(load_model(second), tmp_path / "crops", tmp_path / "idx", checkpoint=second, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()} == before
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    del meta["info"]["checkpoint_sha256"]                           # an index written before hashes were kept
    (tmp_path / "idx" / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="was built with checkpoint"):
        index_folder(load_model(second), tmp_path / "crops", tmp_path / "idx", checkpoint=second, progress=False)
    shutil.copy(first, tmp_path / "copy.pt")                       # the same bytes under another name: same model
    index, added = index_folder(load_model(tmp_path / "copy.pt"), tmp_path / "crops", tmp_path / "idx",
                                checkpoint=tmp_path / "copy.pt", progress=False)
    assert added == 2 and len(index) == 5 and index.info["checkpoint_sha256"] == before_sha(first)


def test_searching_an_index_with_another_checkpoint_is_refused(tmp_path, capsys):
    from trytry_reid.jobs.cli import main as cli_main
    from trytry_reid.serving.app import serve
    from trytry_reid.serving.index import index_folder
    from trytry_reid.serving.inference import load_model

    from test_export import write_images, write_tiny_checkpoint

    first, second = write_tiny_checkpoint(tmp_path / "a.pt", seed=0), write_tiny_checkpoint(tmp_path / "b.pt", seed=1)
    [query, *_] = write_images(tmp_path / "crops" / "a", 3, seed=1)
    index_folder(load_model(first), tmp_path / "crops", tmp_path / "idx", checkpoint=first, progress=False)
    search = ["search", "--index", str(tmp_path / "idx"), "--query", str(query)]
    assert cli_main([*search, "--checkpoint", str(second)]) == 2
    assert "searching it with other weights would compare features of two different models" in capsys.readouterr().err
    with pytest.raises(ValueError, match="was built with checkpoint"):
        serve(tmp_path / "idx", second)                          # refused before the server starts
    assert cli_main([*search, "--checkpoint", str(first)]) == 0 and cli_main(search) == 0


def test_a_checkpoint_calibrated_after_indexing_still_extends_its_index(tmp_path):
    """`calibrate` rewrites the checkpoint file (new bytes, same weights): the index it built stays its own,
    and takes the new operating point; other weights are still refused."""
    from test_embedder import calibrate_on_images

    from trytry_reid.jobs.calibrate import store_in_checkpoint
    from trytry_reid.serving.index import index_folder
    from trytry_reid.serving.inference import load_model

    from test_export import write_images, write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "m.pt")
    images = write_images(tmp_path / "crops" / "a", 6, seed=3)
    index_folder(load_model(checkpoint), tmp_path / "crops", tmp_path / "idx", checkpoint=checkpoint, progress=False)
    before = before_sha(checkpoint)
    store_in_checkpoint(checkpoint, calibrate_on_images(checkpoint, images))
    assert before_sha(checkpoint) != before
    write_images(tmp_path / "crops" / "b", 2, seed=4)
    index, added = index_folder(load_model(checkpoint), tmp_path / "crops", tmp_path / "idx", checkpoint=checkpoint,
                                progress=False)
    assert added == 2 and index.info["calibration"] == load_model(checkpoint).calibration
    other = write_tiny_checkpoint(tmp_path / "other.pt", seed=1)
    with pytest.raises(ValueError, match="other weights"):
        index_folder(load_model(other), tmp_path / "crops", tmp_path / "idx", checkpoint=other, progress=False)


def before_sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_index_command_names_both_checkpoints(tmp_path, capsys):
    from trytry_reid.jobs.cli import main as cli_main

    from test_export import write_images, write_tiny_checkpoint

    first, second = write_tiny_checkpoint(tmp_path / "a.pt", seed=0), write_tiny_checkpoint(tmp_path / "b.pt", seed=1)
    write_images(tmp_path / "crops", 3, seed=1)
    args = ["index", "--images", str(tmp_path / "crops"), "--out", str(tmp_path / "idx"), "--workers", "0"]
    assert cli_main([*args, "--checkpoint", str(first)]) == 0
    assert cli_main([*args, "--checkpoint", str(second)]) == 2
    err = capsys.readouterr().err
    assert str(first.resolve()) in err and str(second.resolve()) in err and "build a new index" in err


@pytest.fixture
def built_index(tmp_path):
    from trytry_reid.serving.index import index_folder
    from trytry_reid.serving.inference import load_model

    from test_export import write_images, write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "m.pt")
    images = write_images(tmp_path / "crops", 4, seed=3)
    index_folder(load_model(checkpoint), tmp_path / "crops", tmp_path / "idx", checkpoint=checkpoint, progress=False)
    return tmp_path / "idx", images[0]


def one_line_error(capsys, argv: list[str], names: str, says: str) -> None:
    from trytry_reid.jobs.cli import main as cli_main

    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert "Traceback" not in err and names in first and says in first, err
    assert err.count("\n") == 2                                     # the error line and the --verbose hint


@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_bytes(p.read_bytes()[:60]), "truncated or not a readable .npz"),
    (lambda p: p.write_bytes(b""), "truncated or not a readable .npz"),
    (lambda p: p.write_text("features: none"), "truncated or not a readable .npz"),
    (lambda p: np.save(p.open("wb"), np.zeros(3)), "holds one .npy array, not an .npz archive"),
])
def test_a_damaged_features_file_is_one_line_naming_it(built_index, capsys, damage, says):
    index_dir, query = built_index
    damage(index_dir / "features.npz")
    one_line_error(capsys, ["search", "--index", str(index_dir), "--query", str(query)],
                   str(index_dir / "features.npz"), says)


@pytest.mark.parametrize("text, says", [
    ('{"format": "trytry-reid-gallery-index/1", "dim": 3', "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"format": "trytry-reid-gallery-index/1"}', "lacks keys ['dim', 'count', 'backend', 'paths']"),
])
def test_a_damaged_index_json_is_one_line_naming_it(built_index, capsys, text, says):
    index_dir, query = built_index
    (index_dir / "index.json").write_text(text)
    one_line_error(capsys, ["search", "--index", str(index_dir), "--query", str(query)],
                   str(index_dir / "index.json"), says)


def test_a_truncated_evaluate_features_file_is_one_line_naming_it(tmp_path, capsys):
    sets = {"query": FeatureSet(np.eye(3), [], np.array([1, 2, 3]), np.array([0, 0, 0])),
            "gallery": FeatureSet(np.eye(3), [], np.array([1, 2, 3]), np.array([1, 1, 1]))}
    path = save_features(tmp_path / "f.npz", sets)
    path.write_bytes(path.read_bytes()[:-40])
    one_line_error(capsys, ["evaluate", "--features", str(path)], str(path), "truncated or not a readable .npz")


@pytest.fixture
def crops_with_a_bad_image(tmp_path):
    from test_export import write_images, write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "m.pt")
    write_images(tmp_path / "crops", 4, seed=3)
    bad = tmp_path / "crops" / "0009_c1s1_000009_00.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)           # a JPEG header, then garbage
    return checkpoint, tmp_path / "crops", bad


@pytest.mark.parametrize("command", ["extract", "index"])
def test_a_bad_image_is_one_error_line_or_skipped_and_counted(crops_with_a_bad_image, tmp_path, capsys, caplog,
                                                              command):
    from trytry_reid.jobs.cli import main as cli_main

    checkpoint, crops, bad = crops_with_a_bad_image
    out = tmp_path / ("f.npz" if command == "extract" else "idx")
    args = [command, "--checkpoint", str(checkpoint), "--images", str(crops), "--out", str(out), "--workers", "1"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "worker" not in err and str(bad) in err and "--on-bad-image skip" in err
    assert len(err.splitlines()) <= 3 and not out.exists()
    assert cli_main([*args, "--on-bad-image", "skip"]) == 0
    assert f"skipping bad image {bad}" in caplog.text and "skipped 1 bad image file(s)" in caplog.text
    paths = load_features(out)[""].paths if command == "extract" else GalleryIndex.load(out).paths
    assert len(paths) == 4 and str(bad.resolve()) not in paths
    assert cli_main([*args, "--on-bad-image", "skip", "--max-bad-images", "0"]) == 2


def test_an_image_that_fails_only_in_a_loader_worker_is_one_line(crops_with_a_bad_image):
    from trytry_reid.data.images import ImageReadError
    from trytry_reid.evaluation.features import extract_features
    from trytry_reid.serving.inference import load_model

    checkpoint, crops, bad = crops_with_a_bad_image
    loaded = load_model(checkpoint)
    with pytest.raises(ImageReadError) as info:     # no header check here: the worker itself meets the file
        extract_features(loaded.model, folder_records(crops), loaded.transform(), workers=1, progress=False)
    assert str(info.value).startswith(f"cannot read image '{bad}'") and "\n" not in str(info.value)
