"""Validation splits that never touch a test set: held-out training ids, a camera shift inside the training
data, and VIPeR's fixed validation and test halves. Sizes, disjointness, determinism and no leak into
training, checked image by image against definitions written out here."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from trytry_reid.data.datasets import VALIDATION_DATASETS, DatasetError, Record, Splits, build_dataset
from trytry_reid.data.holdout import camera_shift, carve_validation, held_out_identities
from trytry_reid.data.identity_halves import half_identities
from trytry_reid.errors import ConfigError
from trytry_reid.jobs import builders
from trytry_reid.jobs.config import load_config

from conftest import MARKET_DEVSPLIT, VIPER, require
from data_fixtures import make_viper_tree


def random_train(seed: int, num_ids: int = 40, cameras: int = 6) -> list[Record]:
    """Training records with 1-8 images per identity, each from a random camera."""
    rng = random.Random(seed)
    return [Record(f"/d/{pid:04d}_c{cam + 1}_{n}.jpg", pid, cam)
            for pid in range(1, num_ids + 1) for n in range(rng.randint(1, 8)) for cam in [rng.randrange(cameras)]]


def reference_query_gallery(records: list[Record]) -> tuple[set[str], set[str]]:
    """The Market test-split rule: per (identity, camera), the image with the smallest path is the query."""
    groups: dict[tuple[int, int], list[str]] = defaultdict(list)
    for r in records:
        groups[(r.pid, r.camid)].append(r.path)
    query = {min(paths) for paths in groups.values()}
    return query, {p for paths in groups.values() for p in paths} - query


def paths(records: list[Record]) -> set[str]:
    return {r.path for r in records}


def check_camera_shift(train: list[Record], num_ids: int, cameras: list[int]) -> tuple[Splits, Splits]:
    """Brute-force checks of camera_shift against its definition; returns its two splits."""
    seen, shifted = camera_shift(Splits("d", train, [], []), num_ids, cameras)
    held_cams = {c - 1 for c in cameras}
    held_ids = held_out_identities(train, num_ids)
    assert len(held_ids) == num_ids
    expected_train = [r for r in train if r.pid not in held_ids and r.camid not in held_cams]
    assert seen.train == expected_train  # same order, nothing else
    for part, split in (("seen", seen), ("shifted", shifted)):
        in_part = [r for r in train if r.pid in held_ids and (r.camid in held_cams) == (part == "shifted")]
        assert (paths(split.query), paths(split.gallery)) == reference_query_gallery(in_part)
        assert len(split.query) + len(split.gallery) == len(in_part)
        assert not paths(split.query + split.gallery) & paths(seen.train)  # no image leaks into training
        assert not {r.pid for r in split.query + split.gallery} & {r.pid for r in seen.train}  # nor an identity
    assert {r.camid for r in shifted.query + shifted.gallery} <= held_cams
    assert not {r.camid for r in seen.train + seen.query + seen.gallery} & held_cams
    assert (seen.name, shifted.name) == ("d-val", "d-val-cams-" + "-".join(map(str, sorted(cameras))))
    return seen, shifted


@pytest.mark.parametrize("seed", range(5))
def test_camera_shift_matches_its_definition_on_random_data(seed):
    train = random_train(seed)
    check_camera_shift(train, 10, [5, 6])
    check_camera_shift(train, 10, [6, 1, 3])


def test_camera_shift_holds_out_the_ids_of_the_plain_validation_split():
    train = random_train(7)
    seen, _ = camera_shift(Splits("d", train, [], []), 10, [5, 6])
    plain = carve_validation(Splits("d", train, [], []), 10)
    assert seen.train == [r for r in plain.train if r.camid < 4]


def test_camera_shift_refuses_what_it_cannot_rank():
    train = random_train(3)
    with pytest.raises(DatasetError, match=r"validation_cameras=\[5\]: expected two or more"):
        camera_shift(Splits("d", train, [], []), 10, [5])
    with pytest.raises(DatasetError, match="but not all"):
        camera_shift(Splits("d", train, [], []), 10, [1, 2, 3, 4, 5, 6])
    with pytest.raises(DatasetError, match="but not all"):
        camera_shift(Splits("d", train, [], []), 10, [6, 7])  # camera 7 does not exist
    one_each = [Record(f"/d/{pid}_{n}.jpg", pid, cam)
                for pid in range(1, 11) for n, cam in enumerate((0, 0, 1, 4 + pid % 2))]
    with pytest.raises(DatasetError, match="seen by two of the shifted cameras"):
        camera_shift(Splits("d", one_each, [], []), 5, [5, 6])


def test_real_devsplit_camera_shift_sizes_and_no_leak():
    splits = build_dataset("market1501", str(require(MARKET_DEVSPLIT)))
    seen, shifted = check_camera_shift(splits.train, 100, [5, 6])
    assert (len(seen.train), len({r.pid for r in seen.train})) == (3931, 401)
    assert (len(seen.query), len(seen.gallery)) == (280, 649)
    assert (len(shifted.query), len(shifted.gallery)) == (151, 607)
    assert len({r.pid for r in shifted.query}) == 91
    again = camera_shift(Splits("d", splits.train, [], []), 100, [5, 6])
    assert again == (seen, shifted)  # no random draw: the same split every time


def test_viper_halves_split_the_identities_by_sorted_position(tmp_path):
    root = str(make_viper_tree(tmp_path / "v", num_ids=7))
    full, val, test = (build_dataset(name, root) for name in ("viper", "viper_val", "viper_test"))
    assert [r.pid for r in val.query] == [1, 3, 5, 7] == [r.pid for r in val.gallery]
    assert [r.pid for r in test.query] == [2, 4, 6] == [r.pid for r in test.gallery]
    assert sorted(val.query + test.query) == sorted(full.query)
    assert sorted(val.gallery + test.gallery) == sorted(full.gallery)
    assert (val.name, test.name, val.train, test.train) == ("viper_val", "viper_test", [], [])
    assert half_identities([9, 2, 5, 2], "val") == {2, 9} and half_identities([9, 2, 5], "test") == {5}


def test_real_viper_halves():
    full, val, test = (build_dataset(name, str(require(VIPER))) for name in ("viper", "viper_val", "viper_test"))
    assert [len(s.query) for s in (val, test)] == [316, 316] == [len(s.gallery) for s in (val, test)]
    assert not {r.pid for r in val.query} & {r.pid for r in test.gallery + test.query}
    assert {r.pid for r in val.query} == {pid for pid in range(1, 633) if pid % 2 == 1}  # file numbers 000, 002..
    assert sorted(val.query + test.query) == sorted(full.query)


def test_a_validation_run_may_score_the_validation_halves_only(tmp_path):
    config = load_config(None, ["data.name=digits", "data.validation_ids=2",
                                f"test.datasets=[{{name: viper_val, root: {tmp_path}}}]"])
    assert [d.name for d in config.test.datasets] == list(VALIDATION_DATASETS)
    for name in ("viper_test", "viper", "digits"):
        test_sets = f"test.datasets=[{{name: viper_val, root: {tmp_path}}}, {{name: {name}, root: {tmp_path}}}]"
        with pytest.raises(ConfigError, match=rf"expected 0 while test.datasets is set.*\({name}\)"):
            load_config(None, ["data.name=digits", "data.validation_ids=2", test_sets])


@pytest.mark.parametrize("overrides", [["data.validation_cameras=[5,6]"],
                                       ["data.validation_ids=5", "data.validation_cameras=[5]"],
                                       ["data.validation_ids=5", "data.validation_cameras=[5,5]"],
                                       ["data.validation_ids=5", "data.validation_cameras=[0,1]"]])
def test_validation_cameras_need_held_out_ids_and_two_cameras(overrides):
    with pytest.raises(ConfigError, match="data.validation_cameras"):
        load_config(None, ["data.name=digits", *overrides])


def test_a_camera_shift_run_ranks_seen_cameras_then_unseen_then_viper_val():
    shared = {"devsplit": require(MARKET_DEVSPLIT), "viper": require(VIPER)}
    config = load_config(None, ["data.name=market1501", f"data.root={shared['devsplit']}", "data.validation_ids=100",
                                "data.validation_cameras=[5,6]",
                                f"test.datasets=[{{name: viper_val, root: {shared['viper']}}}]"])
    train = builders.build_train_splits(config)
    sets = builders.build_test_sets(config, train)
    assert [label for label, _ in sets] == ["market1501-val", "market1501-val-cams-5-6", "viper_val"]
    assert sets[0][1] is train and len(train.train) == 3931
    assert [len(s.query) for _, s in sets] == [280, 151, 316]
    evaluated = builders.build_test_sets(config, None)  # the evaluate job rebuilds them: the same sets
    assert [(label, s.query, s.gallery) for label, s in evaluated] == [(label, s.query, s.gallery) for label, s in sets]
