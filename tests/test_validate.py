"""Data validation: all bad files reported at once (cheap and full), both policies, identity warnings."""

from __future__ import annotations

import logging

import pytest

from trytry_reid.data import (
    DatasetError,
    Record,
    Splits,
    apply_bad_image_policy,
    build_dataset,
    check_identities,
    find_bad_images,
)

from conftest import MARKET_DEVSPLIT, require
from data_fixtures import corrupt_name, make_folder_tree, make_market_tree, truncated_name, write_image


@pytest.fixture
def market(tmp_path):
    root = make_market_tree(tmp_path / "m", corrupt=True, truncated=True)
    (root / "query" / "0003_c2s1_000009_01.jpg").write_text("this is text, not a JPEG")
    return root, build_dataset("market1501", str(root))


@pytest.mark.parametrize("full", [False, True])
def test_every_bad_file_is_reported_at_once(market, full):
    root, splits = market
    bad = find_bad_images(splits.train + splits.query + splits.gallery, workers=2, full=full)
    assert [path for path, _ in bad] == sorted([
        str(root / "bounding_box_train" / corrupt_name()),
        str(root / "bounding_box_train" / truncated_name()),
        str(root / "query" / "0003_c2s1_000009_01.jpg")])
    assert all(reason for _, reason in bad)


def test_truncated_png_is_caught_in_both_modes(tmp_path):
    path = write_image(tmp_path / "x.png", (1, 2, 3), size=(64, 64))
    path.write_bytes(path.read_bytes()[:-30])
    records = [Record(str(path), 1, 0)]
    assert find_bad_images(records) and find_bad_images(records, full=True)


def test_good_data_passes(tmp_path):
    splits = build_dataset("market1501", str(make_market_tree(tmp_path / "m")))
    records = splits.train + splits.query + splits.gallery
    assert find_bad_images(records) == [] and find_bad_images(records, full=True) == []
    assert apply_bad_image_policy(records, [], "error", 0) == records


def test_policy_error_lists_every_bad_path(market):
    _, splits = market
    bad = find_bad_images(splits.train + splits.query)
    with pytest.raises(DatasetError, match="3 bad image file") as info:
        apply_bad_image_policy(splits.train, bad, "error", max_skipped=10)
    assert all(path in str(info.value) for path, _ in bad)


def test_policy_skip_drops_and_logs_each_file(market, caplog):
    _, splits = market
    bad = find_bad_images(splits.train)
    with caplog.at_level(logging.WARNING, logger="trytry_reid.data"):
        kept = apply_bad_image_policy(splits.train, bad, "skip", max_skipped=2)
    assert kept == [r for r in splits.train if r.path not in {p for p, _ in bad}]
    assert len(kept) == len(splits.train) - 2
    assert all(path in caplog.text for path, _ in bad) and "skipped 2 bad image" in caplog.text


def test_policy_skip_aborts_above_the_cap_and_unknown_policy_is_named(market):
    _, splits = market
    bad = find_bad_images(splits.train)
    with pytest.raises(DatasetError, match="more than the cap of 1"):
        apply_bad_image_policy(splits.train, bad, "skip", max_skipped=1)
    with pytest.raises(ValueError, match="'ignore'"):
        apply_bad_image_policy(splits.train, bad, "ignore", max_skipped=1)


def test_check_identities_hand_built_case(tmp_path):
    splits = build_dataset("market1501", str(make_market_tree(tmp_path / "m")))
    problems = check_identities(splits)
    # pid 5: query and gallery both only in camera 3; pid 8: one train image (see MINI_MARKET)
    assert problems == ["query id 5 has no gallery image from another camera: its queries can never match",
                        "1 train id(s) with a single image: [8]"]


def test_empty_identity_folders_are_reported_by_the_folder_dataset(tmp_path, caplog):
    root = make_folder_tree(tmp_path / "f", {"train": {"1": ["a_c1.jpg", "b_c2.jpg"], "2": []},
                                             "query": {"3": ["q_c1.jpg"]}, "gallery": {"3": ["g_c2.jpg"]}})
    with caplog.at_level(logging.WARNING, logger="trytry_reid.data"):
        splits = build_dataset("folder", str(root))
    assert f"identity folder '{root / 'train' / '2'}' holds no image" in caplog.text
    assert check_identities(splits) == []


def test_unmatchable_rule_against_brute_force():
    def record(pid: int, cam: int) -> Record:
        return Record(f"{pid}_{cam}", pid, cam)

    query = [record(1, 0), record(1, 1), record(2, 0), record(3, 0), record(4, 0), record(4, 1)]
    gallery = [record(1, 0), record(2, 0), record(2, 1), record(4, 1)]
    splits = Splits("x", [], query, gallery)
    # brute force: a query id is unmatchable when no (query, gallery) pair has same pid, different camera
    expected = sorted({q.pid for q in query} - {q.pid for q in query for g in gallery
                                                if g.pid == q.pid and g.camid != q.camid})
    assert expected == [3]
    assert [line.split()[2] for line in check_identities(splits)] == ["3"]


def test_real_devsplit_has_four_unmatchable_query_ids():
    splits = build_dataset("market1501", str(require(MARKET_DEVSPLIT)))
    unmatchable = [line for line in check_identities(splits) if "can never match" in line]
    assert len(unmatchable) == 4
