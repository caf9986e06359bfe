"""A validation split carved from the training identities, for choosing recipes without touching a test set.

``carve_validation(splits, num_ids)`` holds out ``num_ids`` training identities and returns new Splits whose
``train`` is every other training image and whose ``query``/``gallery`` are built from the held-out
identities the way the Market-1501 test split is: per held-out identity, the first image (by file name) of
each camera is a query and the other images are the gallery. The held-out identities are spread evenly over
the sorted pids (no random draw), so the split depends on the dataset only, never on the training seed.

Only identities that can be evaluated are eligible: seen by at least two cameras, with more images than
cameras, so that the gallery keeps at least one image of the identity. A query whose only gallery matches
share its camera is left out by the Market protocol (same-camera matches are ignored), as in Market itself.

``camera_shift(splits, num_ids, cameras)`` adds a shift of cameras to that split: training keeps only the
images of the other cameras (of the training identities), the held-out identities are ranked twice, once
within the training cameras (``<dataset>-val``: new people, seen cameras) and once within ``cameras``
(``<dataset>-val-cams-5-6`` for cameras 5 and 6: new people, unseen cameras). Images of the training
identities taken by ``cameras`` are used nowhere. Cameras are numbered as in Market's file names (c1 = 1).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from trytry_reid.data.datasets import DatasetError, Record, Splits


def eligible_identities(records: list[Record]) -> list[int]:
    """Sorted pids with >= 2 cameras and more images than cameras (see the module docstring)."""
    images: dict[int, int] = defaultdict(int)
    cameras: dict[int, set[int]] = defaultdict(set)
    for record in records:
        images[record.pid] += 1
        cameras[record.pid].add(record.camid)
    return sorted(pid for pid in images if len(cameras[pid]) >= 2 and images[pid] > len(cameras[pid]))


def held_out_identities(records: list[Record], num_ids: int) -> set[int]:
    """``num_ids`` eligible pids spread evenly over the sorted eligible pids."""
    eligible = eligible_identities(records)
    if not 1 <= num_ids <= len(eligible):
        raise DatasetError(f"data.validation_ids={num_ids}: expected 1..{len(eligible)} (the training split has "
                           f"{len(eligible)} identities seen by two or more cameras)")
    positions = np.linspace(0, len(eligible) - 1, num_ids).round().astype(int)
    return {eligible[i] for i in positions}


def query_gallery(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """First image (by path) of each (identity, camera) -> query; every other image -> gallery."""
    query, gallery, seen = [], [], set()
    for record in sorted(records, key=lambda r: (r.pid, r.camid, r.path)):
        key = (record.pid, record.camid)
        (gallery if key in seen else query).append(record)
        seen.add(key)
    return query, gallery


def carve_validation(splits: Splits, num_ids: int) -> Splits:
    """Train on all but ``num_ids`` identities; rank the held-out ones (named ``<dataset>-val``)."""
    if not splits.train:
        raise DatasetError(f"data.validation_ids: dataset '{splits.name}' has no training split to carve from")
    held = held_out_identities(splits.train, num_ids)
    train = [r for r in splits.train if r.pid not in held]
    query, gallery = query_gallery([r for r in splits.train if r.pid in held])
    return Splits(f"{splits.name}-val", train, query, gallery)


def camera_label(name: str, cameras: list[int]) -> str:
    """``market1501-val-cams-5-6``: the test-set label of the held-out identities seen by ``cameras``."""
    return f"{name}-val-cams-" + "-".join(str(c) for c in sorted(cameras))


def camera_shift(splits: Splits, num_ids: int, cameras: list[int]) -> tuple[Splits, Splits]:
    """(training split without ``cameras`` + its in-domain validation, the held-out ids within ``cameras``).

    ``cameras`` are 1-based camera numbers, at least two (the Market protocol ignores same-camera matches);
    see the module docstring."""
    if not splits.train:
        raise DatasetError(f"data.validation_ids: dataset '{splits.name}' has no training split to carve from")
    held_cams = {c - 1 for c in cameras}
    present = {r.camid for r in splits.train}
    if len(held_cams) < 2 or not held_cams < present:
        raise DatasetError(f"data.validation_cameras={sorted(cameras)}: expected two or more, but not all, of the "
                           f"cameras of the '{splits.name}' training split "
                           f"({', '.join(str(c + 1) for c in sorted(present))})")
    held_ids = held_out_identities(splits.train, num_ids)
    held = [r for r in splits.train if r.pid in held_ids]
    parts = {"seen": [r for r in held if r.camid not in held_cams],
             "shifted": [r for r in held if r.camid in held_cams]}
    for part, records in parts.items():
        if not cross_camera_identities(records):
            raise DatasetError(f"data.validation_cameras={sorted(cameras)}: no held-out identity of '{splits.name}' "
                               f"is seen by two of the {part} cameras, so there is nothing to rank")
    train = [r for r in splits.train if r.pid not in held_ids and r.camid not in held_cams]
    return (Splits(f"{splits.name}-val", train, *query_gallery(parts["seen"])),
            Splits(camera_label(splits.name, cameras), [], *query_gallery(parts["shifted"])))


def cross_camera_identities(records: list[Record]) -> set[int]:
    """The pids seen by two or more cameras in ``records``."""
    cameras: dict[int, set[int]] = defaultdict(set)
    for record in records:
        cameras[record.pid].add(record.camid)
    return {pid for pid, cams in cameras.items() if len(cams) >= 2}
