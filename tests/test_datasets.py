"""Dataset loaders: the miniature Market tree for every path and error, and the real shared data when present."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from trytry_reid.catalog import UnknownNameError
from trytry_reid.data import DATASETS, DatasetError, Record, build_dataset

from conftest import MARKET_DEVSPLIT, VIPER, require
from data_fixtures import (
    MINI_MARKET,
    MINI_MARKET_COUNTS,
    make_folder_tree,
    make_market_tree,
    make_viper_tree,
    market_name,
    write_image,
)


def counts(records: list[Record]) -> tuple[int, int, int]:
    return len(records), len({r.pid for r in records}), len({r.camid for r in records})


def expected_records(root: Path, folder: str, lowest_pid: int) -> set[Record]:
    """Records written from the MINI_MARKET definition, filtered by hand."""
    return {Record(str(root / folder / market_name(pid, cam, frame)), pid, cam - 1)
            for pid, cams in MINI_MARKET[folder].items() if pid >= lowest_pid
            for frame, cam in enumerate(cams)}


def test_market_records_match_the_definition(tmp_path):
    root = make_market_tree(tmp_path / "m")
    splits = build_dataset("market1501", str(root))
    assert splits.name == "market1501"
    assert set(splits.train) == expected_records(root, "bounding_box_train", 1)
    assert set(splits.query) == expected_records(root, "query", 1)
    assert set(splits.gallery) == expected_records(root, "bounding_box_test", 0)
    for split, expected in MINI_MARKET_COUNTS.items():
        assert counts(getattr(splits, split)) == expected, split


def test_junk_dropped_everywhere_distractors_only_in_gallery(tmp_path):
    splits = build_dataset("market1501", str(make_market_tree(tmp_path / "m")))
    assert all(r.pid > 0 for r in splits.train + splits.query)
    assert all(r.pid >= 0 for r in splits.gallery)
    assert sum(r.pid == 0 for r in splits.gallery) == 2
    assert all(Path(r.path).is_file() and Path(r.path).is_absolute() for r in splits.gallery)


def test_build_logs_a_count_table(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="trytry_reid.data"):
        build_dataset("market1501", str(make_market_tree(tmp_path / "m")))
    lines = [line.split() for line in caplog.text.splitlines()]
    assert ["train", "9", "4", "3"] in lines and ["gallery", "8", "4", "3"] in lines


def test_every_bad_name_is_reported_with_the_pattern(tmp_path):
    root = make_market_tree(tmp_path / "m", bad_name=True)
    write_image(root / "bounding_box_test" / "0001_s1_00.png", (5, 5, 5))  # a second one, in another split
    with pytest.raises(DatasetError) as info:
        build_dataset("market1501", str(root))
    message = str(info.value)
    assert "not_a_market_name.jpg" in message and "0001_s1_00.png" in message
    assert "2 file name(s)" in message and "<pid>_c<camera>" in message


def test_missing_root_and_split_show_the_layout(tmp_path):
    with pytest.raises(DatasetError, match="bounding_box_train/") as info:
        build_dataset("market1501", str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(info.value) and "Where to get it" in str(info.value)
    root = make_market_tree(tmp_path / "m")
    (root / "query").rename(root / "queries")
    with pytest.raises(DatasetError, match=str(root / "query")):
        build_dataset("dukemtmcreid", str(root))
    with pytest.raises(DatasetError, match="root folder is required"):
        build_dataset("market1501", None)


def test_empty_split_is_an_error_naming_it(tmp_path):
    root = make_market_tree(tmp_path / "m", empty_split="query")
    with pytest.raises(DatasetError, match=r"split 'query' is empty.*" + str(root / "query")):
        build_dataset("market1501", str(root))


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError, match="market1501") as info:
        build_dataset("market1051", "x")
    assert "Did you mean 'market1501'" in str(info.value)
    assert set(DATASETS) == {"market1501", "dukemtmcreid", "msmt17", "cuhk03np", "viper", "viper_val",
                             "viper_test", "folder", "mnist", "digits"}


def test_cuhk03np_accepts_parent_or_subfolder(tmp_path):
    make_market_tree(tmp_path / "cuhk" / "labeled")
    make_market_tree(tmp_path / "cuhk" / "detected")
    from_parent = build_dataset("cuhk03np", str(tmp_path / "cuhk"))
    assert all("/labeled/" in r.path for r in from_parent.train)
    from_detected = build_dataset("cuhk03np", str(tmp_path / "cuhk" / "detected"))
    assert all("/detected/" in r.path for r in from_detected.query)
    with pytest.raises(DatasetError, match="labeled/"):
        build_dataset("cuhk03np", str(tmp_path))


def write_msmt(root: Path) -> None:
    train = ["0000/0000_000_01_0303morning_0015_0.jpg", "0001/0001_001_05_0303noon_0001_1.jpg"]
    test = ["0000/0000_000_02_0303morning_0020_0.jpg", "0002/0002_004_15_0303noon_0002_0.jpg"]
    for folder, names in (("train", train), ("test", test)):
        for name in names:
            write_image(root / folder / name, (1, 1, 1))
    (root / "list_train.txt").write_text(f"{train[0]} 0\n")
    (root / "list_val.txt").write_text(f"{train[1]} 1\n\n")
    (root / "list_query.txt").write_text(f"{test[0]} 0\n")
    (root / "list_gallery.txt").write_text(f"{test[1]} 2\n{test[0]} 0\n")


def test_msmt17_lists_cameras_and_shifted_pids(tmp_path):
    write_msmt(tmp_path)
    splits = build_dataset("msmt17", str(tmp_path))
    assert [(r.pid, r.camid) for r in splits.train] == [(1, 0), (2, 4)]  # train + val, pid = label + 1
    assert [(r.pid, r.camid) for r in splits.query] == [(1, 1)]
    assert [(r.pid, r.camid) for r in splits.gallery] == [(3, 14), (1, 1)]
    assert splits.gallery[0].path == str(tmp_path / "test" / "0002/0002_004_15_0303noon_0002_0.jpg")
    (tmp_path / "list_gallery.txt").write_text("\n")
    with pytest.raises(DatasetError, match="split 'gallery' is empty: '.*list_gallery.txt'"):
        build_dataset("msmt17", str(tmp_path))
    (tmp_path / "list_query.txt").write_text("garbage line here\n0000/0000_000_02_0303_0020_0.jpg ²\n")
    with pytest.raises(DatasetError, match=r"list_query.txt:1: 'garbage line here'\n.*list_query.txt:2: '0000"):
        build_dataset("msmt17", str(tmp_path))
    (tmp_path / "list_val.txt").unlink()
    with pytest.raises(DatasetError, match="list_val.txt"):
        build_dataset("msmt17", str(tmp_path))


def test_viper_is_test_only_across_cameras(tmp_path):
    splits = build_dataset("viper", str(make_viper_tree(tmp_path / "v", num_ids=4)))
    assert splits.train == []
    assert [(r.pid, r.camid) for r in splits.query] == [(1, 0), (2, 0), (3, 0), (4, 0)]
    assert [(r.pid, r.camid) for r in splits.gallery] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    (tmp_path / "v" / "cam_b" / "oops.bmp").write_bytes(b"")
    with pytest.raises(DatasetError, match="oops.bmp"):
        build_dataset("viper", str(tmp_path / "v"))


def test_folder_layout_with_cameras_and_named_ids(tmp_path):
    root = make_folder_tree(tmp_path / "f", {
        "train": {"7": ["a_c1.jpg", "b_c2.png"], "alice": ["x-c3-1.jpg"], "bob": ["y_c1s2_5.jpg"]},
        "query": {"alice": ["q_c1.jpg"], "9": ["q_c2.jpg"]},
        "gallery": {"alice": ["g_c2.jpg"], "9": ["g_c1.jpg"], "0": ["d_c1.jpg"], "carol": []},
    })
    splits = build_dataset("folder", str(root))
    alice, bob = 10, 11  # non-integer names follow the largest integer pid (9), in sorted order
    assert sorted((r.pid, r.camid) for r in splits.train) == [(7, 0), (7, 1), (alice, 2), (bob, 0)]
    assert sorted((r.pid, r.camid) for r in splits.query) == [(9, 1), (alice, 0)]
    assert sorted((r.pid, r.camid) for r in splits.gallery) == [(0, 0), (9, 0), (alice, 1)]


def test_folder_names_are_identities_never_merged_or_crashing(tmp_path):
    root = make_folder_tree(tmp_path / "f", {
        "train": {"3": ["a_c1.jpg", "b_c2.jpg"], "²": ["c_c1.jpg", "d_c2.jpg"], "x7": ["e_c1.jpg"]},
        "query": {"3": ["q_c1.jpg"], "²": ["r_c1.jpg"]},
        "gallery": {"3": ["g_c2.jpg"], "²": ["h_c2.jpg"], "0000": ["z_c1.jpg"]},
    })
    splits = build_dataset("folder", str(root))
    by_folder = {Path(r.path).parent.name: r.pid for r in splits.train + splits.query + splits.gallery}
    assert by_folder == {"3": 3, "x7": 4, "²": 5, "0000": 0}    # '²' is a name, not the number 2
    clash = make_folder_tree(tmp_path / "clash", {"train": {"7": ["a_c1.jpg"], "007": ["b_c1.jpg"]},
                                                  "query": {"7": ["q_c1.jpg"]}, "gallery": {"007": ["g_c2.jpg"]}})
    with pytest.raises(DatasetError, match=r"identity folders '007' and '7' both read as pid 7"):
        build_dataset("folder", str(clash))


def test_folder_without_cameras_warns_and_separates_query_from_gallery(tmp_path, caplog):
    root = make_folder_tree(tmp_path / "f", {"train": {"1": ["a.jpg"]}, "query": {"2": ["b.jpg"]},
                                             "gallery": {"2": ["c.jpg", "d.jpg"]}})
    with caplog.at_level(logging.WARNING, logger="trytry_reid.data"):
        splits = build_dataset("folder", str(root))
    assert "no 'c<N>' camera token" in caplog.text
    assert {r.camid for r in splits.query} == {0} and {r.camid for r in splits.gallery} == {1}


def test_folder_errors_name_the_file(tmp_path):
    mixed = make_folder_tree(tmp_path / "mixed", {"train": {"1": ["a_c1.jpg", "nocam.jpg"]},
                                                  "query": {"2": ["b_c1.jpg", "alsonone.jpg"]},
                                                  "gallery": {"2": ["c_c2.jpg"]}})
    with pytest.raises(DatasetError, match=r"(?s)2 file\(s\) have no 'c<N>' camera token.*nocam.jpg.*alsonone.jpg"):
        build_dataset("folder", str(mixed))
    zero = make_folder_tree(tmp_path / "zero", {"train": {"0": ["a_c1.jpg"]}, "query": {"2": ["b_c1.jpg"]},
                                                "gallery": {"2": ["c_c2.jpg"]}})
    with pytest.raises(DatasetError, match="reserved for gallery distractors"):
        build_dataset("folder", str(zero))
    empty = make_folder_tree(tmp_path / "empty", {"train": {"1": ["a_c1.jpg"]}, "query": {"2": []},
                                                  "gallery": {"2": ["c_c2.jpg"]}})
    with pytest.raises(DatasetError, match="split 'query' is empty"):
        build_dataset("folder", str(empty))


def test_real_market_devsplit_counts():
    splits = build_dataset("market1501", str(require(MARKET_DEVSPLIT)))
    assert [counts(s)[:2] for s in (splits.train, splits.query, splits.gallery)] == [
        (8642, 501), (1076, 250), (3218, 246)]
    assert {r.camid for r in splits.train} == set(range(6))


def test_real_viper_counts():
    splits = build_dataset("viper", str(require(VIPER)))
    assert (len(splits.query), len(splits.gallery), len(splits.train)) == (632, 632, 0)
    assert {r.pid for r in splits.query} == {r.pid for r in splits.gallery}
