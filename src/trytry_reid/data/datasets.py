"""Datasets as three plain lists of records: one function per dataset, one catalog, one builder.

Every function takes the dataset root (a folder, or None where no root is needed) and returns
:class:`Splits`. Conventions shared by the whole toolkit:

* ``pid`` is the dataset's own identity number, never relabelled. In the person datasets ``0`` means
  "distractor": such images are kept in the gallery as negatives and dropped from train and query; ``-1``
  ("junk") is dropped everywhere. Person datasets that number real identities from 0 (VIPeR, MSMT17) are
  shifted by one, so that 0 keeps that meaning there. The digit sets keep the digit as the pid (0 is the
  digit zero). The evaluation code never special-cases pid 0: a distractor matches no query because no
  query carries pid 0.
* ``camid`` is 0-based (file token ``c1`` -> 0).
* Paths are absolute and point at real files.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from trytry_reid.catalog import lookup
from trytry_reid.data import digits as digit_sets
from trytry_reid.data.identity_halves import keep_half
from trytry_reid.errors import ReidError

log = logging.getLogger("trytry_reid.data")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MARKET_PATTERN = re.compile(r"^(-1|\d+)_c(\d+)")
MARKET_PATTERN_TEXT = "<pid>_c<camera>..., e.g. 0002_c1s1_000451_03.jpg (pid -1 = junk, 0 = distractor)"
CAMERA_TOKEN = re.compile(r"(?:^|[_\-\s.])c(\d+)(?=$|[_\-\s.]|s\d)")


class Record(NamedTuple):
    """One image: where it is, who it shows, which camera took it."""

    path: str  # absolute path of a real image file
    pid: int  # the dataset's own identity number (not relabelled); 0 = distractor (gallery only)
    camid: int  # 0-based camera index


@dataclass(frozen=True)
class Splits:
    """A dataset's three record lists; ``train`` may be empty for test-only datasets (VIPeR)."""

    name: str
    train: list[Record]
    query: list[Record]
    gallery: list[Record]


class DatasetError(ReidError, ValueError):
    """A dataset that cannot be built; the message names the path/file and what was expected."""


MARKET_LAYOUT = """{root}/
    bounding_box_train/   0002_c1s1_000451_03.jpg ...
    query/                0001_c1s1_001051_00.jpg ...
    bounding_box_test/    0000_c1s1_000151_01.jpg ..."""

SOURCES = {
    "market1501": "Market-1501-v15.09.15 from the authors' project page (Zheng et al., ICCV 2015)",
    "dukemtmcreid": "DukeMTMC-reID (Zheng et al., ICCV 2017); withdrawn by its authors, use an existing copy",
    "cuhk03np": "cuhk03-np (the new protocol of Zhong et al., CVPR 2017 re-ranking), labeled/ and detected/",
    "msmt17": "MSMT17_V1 from the authors (Wei et al., CVPR 2018), on request",
    "viper": "VIPeR v1.0 (Gray et al., 2007)",
    "folder": "your own images, one sub-folder per identity",
    "mnist": "torchvision.datasets.MNIST(root, download=True) on a machine with internet",
}


def layout_error(name: str, missing: Path, layout: str) -> DatasetError:
    """An error naming the missing path, the expected layout and where the dataset comes from."""
    source = SOURCES.get(name, "")
    return DatasetError(
        f"{name}: '{missing}' does not exist. Expected layout:\n{layout}\n"
        + (f"Where to get it: {source}." if source else "")
    )


def require_dir(name: str, path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise layout_error(name, path, layout)
    return path


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (other files are ignored)."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def images_under(root: Path) -> list[Path]:
    """Image files anywhere below ``root``, sorted by their path relative to it."""
    return sorted((p for p in root.rglob("*") if is_image_file(p)), key=lambda p: p.relative_to(root).as_posix())


def market_name_labels(name: str) -> tuple[int, int] | None:
    """``(pid, 0-based camid)`` of a ``<pid>_c<camera>...`` file name (camera numbers start at 1), or None."""
    match = MARKET_PATTERN.match(Path(name).name)
    if match is None or int(match.group(2)) < 1:
        return None
    return int(match.group(1)), int(match.group(2)) - 1


def parse_market_names(files: list[Path]) -> tuple[list[Record], list[str]]:
    """Parse ``<pid>_c<camera>...`` names: (records, paths of names that do not parse)."""
    records, bad = [], []
    for path in files:
        labels = market_name_labels(path.name)
        if labels is None:
            bad.append(str(path))
        else:
            records.append(Record(str(path), *labels))
    return records, bad


def keep_for_split(records: list[Record], split: str) -> list[Record]:
    """Drop junk (-1) everywhere and distractors (0) outside the gallery."""
    lowest = 0 if split == "gallery" else 1
    return [r for r in records if r.pid >= lowest]


def market_style(name: str, root: Path, folders: dict[str, str]) -> Splits:
    """Market-1501-like layout: one folder per split, identity and camera in each file name.

    Every unparsable name in every split is reported in one error."""
    layout = MARKET_LAYOUT.format(root=root)
    require_dir(name, root, layout)
    parsed = {split: parse_market_names(list_images(require_dir(name, root / folder, layout)))
              for split, folder in folders.items()}
    bad = [path for _, bad_names in parsed.values() for path in bad_names]
    if bad:
        listed = "\n  ".join(bad)
        raise DatasetError(f"{name}: {len(bad)} file name(s) do not match {MARKET_PATTERN_TEXT}:\n  {listed}")
    splits = {split: keep_for_split(records, split) for split, (records, _) in parsed.items()}
    for split, records in splits.items():
        if not records:
            raise DatasetError(f"{name}: split '{split}' is empty: no usable image in "
                               f"'{root / folders[split]}'.\n{layout}")
    return Splits(name, splits["train"], splits["query"], splits["gallery"])


MARKET_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def market1501(root: str | None) -> Splits:
    return market_style("market1501", need_root("market1501", root), MARKET_FOLDERS)


def dukemtmcreid(root: str | None) -> Splits:
    return market_style("dukemtmcreid", need_root("dukemtmcreid", root), MARKET_FOLDERS)


CUHK03_LAYOUT = """{root}/
    labeled/    bounding_box_train/  query/  bounding_box_test/   (Market-style names)
    detected/   bounding_box_train/  query/  bounding_box_test/"""


def cuhk03np(root: str | None) -> Splits:
    """``root`` may be the cuhk03-np folder (then ``labeled/`` is used) or ``labeled/`` / ``detected/`` itself."""
    base = need_root("cuhk03np", root)
    if not (base / "bounding_box_train").is_dir():
        if not (base / "labeled").is_dir():
            raise layout_error("cuhk03np", base / "labeled", CUHK03_LAYOUT.format(root=base))
        base = base / "labeled"
    return market_style("cuhk03np", base, MARKET_FOLDERS)


MSMT_LAYOUT = """{root}/
    train/  test/                      image folders
    list_train.txt  list_val.txt       lines '<path relative to train/> <label>'
    list_query.txt  list_gallery.txt   lines '<path relative to test/> <label>'"""
MSMT_NAME = re.compile(r"^\d+_\d+_(\d+)_")


def msmt17_list(list_file: Path, image_dir: Path) -> list[Record]:
    """Read one MSMT17 list file; camera from the third name field; pid = label + 1 (see module doc).
    Every malformed line is reported in one error."""
    records, bad = [], []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        name_match = MSMT_NAME.match(Path(parts[0]).name) if len(parts) == 2 else None
        if name_match is None or not re.fullmatch(r"-?[0-9]+", parts[1]):
            bad.append(f"{list_file}:{number}: '{line}'")
            continue
        records.append(Record(str(image_dir / parts[0]), int(parts[1]) + 1, int(name_match.group(1)) - 1))
    if bad:
        raise DatasetError(f"msmt17: {len(bad)} line(s) are not '<pid>/<pid>_<n>_<camera>_... <label>':\n  "
                           + "\n  ".join(bad))
    return records


def msmt17(root: str | None) -> Splits:
    base = need_root("msmt17", root)
    layout = MSMT_LAYOUT.format(root=base)
    parts = {"train": ("list_train.txt", "train"), "val": ("list_val.txt", "train"),
             "query": ("list_query.txt", "test"), "gallery": ("list_gallery.txt", "test")}
    lists = {}
    for split, (list_name, folder) in parts.items():
        list_file, image_dir = base / list_name, base / folder
        if not list_file.is_file():
            raise layout_error("msmt17", list_file, layout)
        lists[split] = msmt17_list(list_file, require_dir("msmt17", image_dir, layout))
        if not lists[split] and split != "val":
            raise DatasetError(f"msmt17: split '{split}' is empty: '{list_file}' lists no image.\n{layout}")
    return Splits("msmt17", lists["train"] + lists["val"], lists["query"], lists["gallery"])


VIPER_LAYOUT = """{root}/
    cam_a/   000_45.bmp 001_45.bmp ...   (NNN_ANGLE.bmp; NNN = identity)
    cam_b/   000_90.bmp 001_90.bmp ..."""
VIPER_NAME = re.compile(r"^(\d+)_\d+$")


def viper(root: str | None) -> Splits:
    """Test-only: query = cam_a (camid 0), gallery = cam_b (camid 1), train empty; pid = NNN + 1."""
    base = need_root("viper", root)
    layout = VIPER_LAYOUT.format(root=base)
    views = [list_images(require_dir("viper", base / folder, layout)) for folder in ("cam_a", "cam_b")]
    bad = [str(f) for files in views for f in files if VIPER_NAME.match(f.stem) is None]
    if bad:
        raise DatasetError("viper: file name(s) not NNN_ANGLE.bmp:\n  " + "\n  ".join(bad))
    for folder, files in zip(("cam_a", "cam_b"), views):
        if not files:
            raise DatasetError(f"viper: '{base / folder}' holds no image.\n{layout}")
    query, gallery = ([Record(str(f), int(VIPER_NAME.match(f.stem).group(1)) + 1, camid) for f in files]
                      for camid, files in enumerate(views))
    return Splits("viper", [], query, gallery)


def viper_half(root: str | None, half: str) -> Splits:
    """One of VIPeR's two fixed identity halves (data/identity_halves.py), query cam_a against gallery cam_b."""
    full = viper(root)
    return Splits(f"viper_{half}", [], *keep_half(full.query, full.gallery, half))


def viper_val(root: str | None) -> Splits:
    """VIPeR's validation half: 316 of its 632 identities, for choosing recipes."""
    return viper_half(root, "val")


def viper_test(root: str | None) -> Splits:
    """VIPeR's test half: the other 316 identities, scored once for the chosen recipe."""
    return viper_half(root, "test")


FOLDER_LAYOUT = """{root}/
    train/    <pid>/<any name>.jpg      (pid: digits, or any other folder name; 0 = distractors, gallery only;
                                        train/ may be left out in a test set: evaluate, calibrate)
    query/    <pid>/<any name>.jpg      camera from a 'c<N>' token in the name (c1 -> camid 0), e.g. x_c2_7.jpg
    gallery/  <pid>/<any name>.jpg"""


def folder_entries(name: str, split_dir: Path) -> list[tuple[str, Path]]:
    """(identity folder name, image path) for every image under ``split_dir/<pid>/``."""
    entries = []
    for pid_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        images = list_images(pid_dir)
        if not images:
            log.warning("%s: identity folder '%s' holds no image; ignored", name, pid_dir)
        entries.extend((pid_dir.name, image) for image in images)
    return entries


def folder_pid_map(all_names: set[str]) -> dict[str, int]:
    """Identity folder name -> pid. Each distinct name is one identity: a name of ASCII digits is its number
    (``0``, ``0000``: distractors), any other name (``alice``, ``²``) gets a number after the largest such
    number, in sorted name order. Two names that read as the same number (``007`` and ``7``) are an error
    rather than one silently merged identity."""
    numeric: dict[str, int] = {}
    for name in sorted(all_names):
        if re.fullmatch(r"[0-9]+", name):
            same = next((other for other, pid in numeric.items() if pid == int(name)), None)
            if same is not None:
                raise DatasetError(f"folder: identity folders '{same}' and '{name}' both read as pid {int(name)}; "
                                   f"rename one (each folder is one identity)")
            numeric[name] = int(name)
    start = max(numeric.values(), default=0) + 1
    others = sorted(all_names - set(numeric))
    return {**numeric, **{n: start + i for i, n in enumerate(others)}}


def folder_camera(path: Path) -> int | None:
    match = CAMERA_TOKEN.search(path.stem)
    if match is None:
        return None
    if int(match.group(1)) < 1:
        raise DatasetError(f"folder: '{path}': camera numbers start at 1 (c1 -> camid 0), found c0")
    return int(match.group(1)) - 1


def folder(root: str | None) -> Splits:
    """``<root>/<split>/<pid>/<name>``. Without camera tokens: query camid 0, gallery camid 1 (warned)."""
    base = need_root("folder", root)
    layout = FOLDER_LAYOUT.format(root=base)
    splits_here = ("query", "gallery") if not (base / "train").exists() else ("train", "query", "gallery")
    entries = {s: folder_entries("folder", require_dir("folder", base / s, layout)) for s in splits_here}
    pid_of = folder_pid_map({pid_name for split in entries.values() for pid_name, _ in split})
    cameras = {s: [folder_camera(path) for _, path in items] for s, items in entries.items()}
    flat = [c for cams in cameras.values() for c in cams]
    if flat and all(c is None for c in flat):
        log.warning("folder: no 'c<N>' camera token in any file name under %s; using camid 0 for train "
                       "and query, 1 for gallery, so that same-camera filtering does not drop every match", base)
        cameras = {s: [1 if s == "gallery" else 0] * len(items) for s, items in entries.items()}
    elif None in flat:
        missing = [str(p) for s in entries for (_, p), c in zip(entries[s], cameras[s]) if c is None]
        raise DatasetError(f"folder: {len(missing)} file(s) have no 'c<N>' camera token, but other names do:\n  "
                           + "\n  ".join(missing) + f"\n{layout}")
    splits = {"train": []}      # no train/ folder: a test set only (evaluate, calibrate); training refuses it
    for split, items in entries.items():
        records = [Record(str(p), pid_of[n], c) for (n, p), c in zip(items, cameras[split])]
        splits[split] = check_folder_split(records, split, base / split, layout)
    return Splits("folder", splits["train"], splits["query"], splits["gallery"])


def check_folder_split(records: list[Record], split: str, path: Path, layout: str) -> list[Record]:
    distractors = sorted({str(Path(r.path).parent) for r in records if r.pid == 0})
    if split != "gallery" and distractors:
        raise DatasetError(f"folder: '{distractors[0]}': pid 0 is reserved for gallery distractors.\n{layout}")
    if not records:
        raise DatasetError(f"folder: split '{split}' is empty: no image under '{path}'.\n{layout}")
    return records


def digit_splits(name: str, parts: digit_sets.DigitParts) -> Splits:
    """Closed-set digits: train camid 0, query camid 0, gallery camid 1; pid = the digit itself (0..9).

    pid 0 is a real identity here (the digit zero), not a distractor: these loaders drop nothing, and the
    evaluator treats pid 0 like any other label; only the Market-style loaders give pid 0 its meaning.
    """
    def as_records(items: list[tuple[str, int]], camid: int) -> list[Record]:
        return [Record(path, label, camid) for path, label in items]

    return Splits(name, as_records(parts.train, 0), as_records(parts.query, 0), as_records(parts.gallery, 1))


def mnist(root: str | None) -> Splits:
    try:
        return digit_splits("mnist", digit_sets.mnist_parts(need_root("mnist", root)))
    except digit_sets.DigitDataError as error:
        raise DatasetError(f"{error}. Where to get it: {SOURCES['mnist']}") from error


def digits(root: str | None) -> Splits:
    """scikit-learn's bundled digits; ``root`` is ignored."""
    return digit_splits("digits", digit_sets.sklearn_digits_parts())


def need_root(name: str, root: str | None) -> Path:
    if root is None or str(root).strip() == "":
        source = SOURCES.get(name)
        raise DatasetError(f"{name}: a root folder is required (data.root)"
                           + (f"; where to get it: {source}" if source else ""))
    return Path(root).expanduser().absolute()


DATASETS: dict[str, Callable[[str | None], Splits]] = {
    "market1501": market1501,
    "dukemtmcreid": dukemtmcreid,
    "msmt17": msmt17,
    "cuhk03np": cuhk03np,
    "viper": viper,
    "viper_val": viper_val,
    "viper_test": viper_test,
    "folder": folder,
    "mnist": mnist,
    "digits": digits,
}


# The test-only datasets a validation run (data.validation_ids) may score: halves kept for choosing.
VALIDATION_DATASETS = ("viper_val",)


def summary_table(splits: Splits) -> str:
    """A small text table: images / ids / cameras per split."""
    rows = [f"{'split':<8} {'images':>7} {'ids':>6} {'cameras':>8}"]
    for split in ("train", "query", "gallery"):
        records = getattr(splits, split)
        rows.append(f"{split:<8} {len(records):>7} {len({r.pid for r in records}):>6} "
                    f"{len({r.camid for r in records}):>8}")
    return "\n".join(rows)


def build_dataset(name: str, root: str | None) -> Splits:
    """Build dataset ``name`` from ``root``; logs the per-split counts. Raises DatasetError/UnknownNameError."""
    splits = lookup(DATASETS, name, "dataset")(root)
    log.info("dataset %s (%s)\n%s", name, root, summary_table(splits))
    return splits
