"""Dataset validation before training: bad image files, the bad-image policy, suspicious identities.

Two depths, both reporting every problem at once:

* cheap (``full=False``, the start of every run): Pillow opens the header and runs ``verify()`` (PNG CRCs,
  structure), the size must reach the minimum crop size (``crop_size.py``), and a JPEG must end with its
  end-of-image marker, which catches truncated JPEGs without decoding them;
* full (``full=True``, ``--check-data``): every image is decoded, exactly as training would.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from trytry_reid.data.crop_size import crop_size_problem
from trytry_reid.data.datasets import DatasetError, Record, Splits, build_dataset, images_under
from trytry_reid.data.images import ImageReadError, read_image

log = logging.getLogger("trytry_reid.data")

POLICIES = ("error", "skip")
JPEG_END = b"\xff\xd9"
JPEG_TAIL_BYTES = 1024  # some writers pad after the end marker; look for it near the end


def check_header(path: str) -> str | None:
    """None when the cheap check passes, else the reason. One open, no pixel decoding."""
    try:
        with open(path, "rb") as handle:
            with Image.open(handle) as image:
                image_format, small = image.format, crop_size_problem(*image.size)
                image.verify()
            if small is not None:
                return small
            if image_format == "JPEG":
                size = handle.seek(0, 2)
                handle.seek(max(0, size - JPEG_TAIL_BYTES))
                if JPEG_END not in handle.read():
                    return "truncated JPEG (no end-of-image marker)"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def check_decode(path: str) -> str | None:
    """None when the image decodes fully, else the reason."""
    try:
        read_image(path)
    except ImageReadError as error:
        return str(error.__cause__ or error)
    return None


def find_bad_images(records: Iterable[Record], workers: int = 4, full: bool = False) -> list[tuple[str, str]]:
    """Every unreadable, truncated or non-image file among ``records``, as sorted (path, reason) pairs."""
    paths = sorted({r.path for r in records})
    check = check_decode if full else check_header
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(check, paths))
    return [(path, reason) for path, reason in zip(paths, reasons) if reason is not None]


def apply_bad_image_policy(records: Sequence[Record], bad: Sequence[tuple[str, str]], policy: str,
                           max_skipped: int, switches: tuple[str, str] = ("data.on_bad_image=skip",
                                                                          "data.max_bad_images")) -> list[Record]:
    """``error``: raise listing every bad path. ``skip``: log and drop each, raise above ``max_skipped``.
    ``switches`` name the setting that skips and the one that caps, for the error messages."""
    if policy not in POLICIES:
        raise ValueError(f"bad-image policy '{policy}': expected one of {', '.join(POLICIES)}")
    if not bad:
        return list(records)
    listing = "\n  ".join(f"{path}: {reason}" for path, reason in bad)
    if policy == "error":
        raise DatasetError(f"{len(bad)} bad image file(s) (policy 'error'; {switches[0]} drops them):\n  {listing}")
    if len(bad) > max_skipped:
        raise DatasetError(f"{len(bad)} bad image file(s), more than the cap of {max_skipped} that policy "
                           f"'skip' may drop; fix the data or raise {switches[1]}:\n  {listing}")
    for path, reason in bad:
        log.warning("skipping bad image %s: %s", path, reason)
    bad_paths = {path for path, _ in bad}
    kept = [r for r in records if r.path not in bad_paths]
    log.warning("skipped %d bad image file(s) (%d records)", len(bad), len(records) - len(kept))
    return kept


def image_files_under(root: str | Path | None) -> list[Path]:
    """Every image file below ``root`` (recursive), for checking data whose layout does not parse."""
    if root is None or not Path(root).is_dir():
        return []
    return images_under(Path(root))


def dataset_report(name: str, root: str | None) -> tuple[list[str], int]:
    """``--check-data`` for one dataset: (lines to print, number of problems), everything at once.

    A layout or file-name error is one problem and does not stop the rest: every image file under the root
    is then still decoded. Identity notes (``check_identities``) are printed but are not problems."""
    lines, problems = [], 0
    try:
        splits = build_dataset(name, root)
        records, notes = splits.train + splits.query + splits.gallery, check_identities(splits)
    except DatasetError as error:
        lines.append(str(error).removeprefix(f"{name}: "))
        records, notes, problems = [Record(str(p), -1, -1) for p in image_files_under(root)], [], 1
    bad = find_bad_images(records, full=True)
    lines += [f"bad image {path}: {reason}" for path, reason in bad] + notes
    lines.append(f"{len({r.path for r in records})} images checked, {len(bad)} bad")
    return lines, problems + len(bad)


def cameras_by_id(records: Iterable[Record]) -> dict[int, set[int]]:
    cameras: dict[int, set[int]] = {}
    for record in records:
        cameras.setdefault(record.pid, set()).add(record.camid)
    return cameras


def unmatchable_query_ids(splits: Splits) -> list[int]:
    """Query ids none of whose images has a gallery image of the same id from another camera."""
    gallery = cameras_by_id(splits.gallery)
    return sorted(pid for pid, cams in cameras_by_id(splits.query).items()
                  if all(gallery.get(pid, set()) <= {cam} for cam in cams))


def single_image_train_ids(splits: Splits) -> list[int]:
    pids, counts = np.unique([r.pid for r in splits.train], return_counts=True)
    return pids[counts == 1].tolist()


def check_identities(splits: Splits) -> list[str]:
    """Warnings about identities, one line each: query ids that can never match (no gallery image from
    another camera) and train ids with a single image (no positive pair for metric losses). (Empty identity
    folders of the ``folder`` layout are logged by the dataset builder itself.)"""
    problems = [f"query id {pid} has no gallery image from another camera: its queries can never match"
                 for pid in unmatchable_query_ids(splits)]
    singles = single_image_train_ids(splits)
    if singles:
        problems.append(f"{len(singles)} train id(s) with a single image: {singles[:20]}")
    return problems
