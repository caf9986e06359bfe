"""Features for any folder of person crops: list images recursively, read Market-style labels, extract, save.

File names such as ``0002_c1s1_000451_03.jpg`` (Market-1501 / DukeMTMC style: ``<pid>_c<camera>...``) carry
an identity and a 1-based camera number; the camera is returned 0-based, as in ``Record``. Names that do not
follow the pattern get ``pid = camid = -1``. Market's own junk images are also named ``-1_c...`` and so also
read as pid -1, which downstream code treats the same way: "identity unknown".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")
_FEATURE_KEYS = ("features", "paths", "pids", "camids")


class FolderFeatures(NamedTuple):
    features: np.ndarray  # [N, D] float32, each row L2-normalised
    paths: list[str]      # absolute image paths, sorted
    pids: np.ndarray      # [N] int64, -1 where the name carries no identity
    camids: np.ndarray    # [N] int64, 0-based camera, -1 where the name carries none


def list_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive), sorted by their path relative to ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"image folder '{root}' does not exist or is not a directory")
    found = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not found:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under '{root}'")
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def parse_market_name(name: str) -> tuple[int, int]:
    """(pid, 0-based camid) from a Market-style file name, or (-1, -1) when the name has no such prefix."""
    match = _MARKET_NAME.match(Path(name).name)
    if match is None:
        return -1, -1
    return int(match.group(1)), int(match.group(2)) - 1


def folder_records(root: str | Path) -> list:
    """``Record(path, pid, camid)`` for every image under ``root``; paths are absolute."""
    from trytry_reid.data.datasets import Record

    records = []
    for path in list_images(root):
        pid, camid = parse_market_name(path.name)
        records.append(Record(str(path.resolve()), pid, camid))
    return records


def usable_records(records: list, on_bad_image: str = "error", max_bad_images: int = 100) -> list:
    """``records`` after training's bad-image policy (``data/validate.py``): a cheap check of every file, then
    ``error`` (raise listing each bad file) or ``skip`` (log each, count them, drop them; raise above the cap)."""
    from trytry_reid.data.validate import apply_bad_image_policy, find_bad_images

    return apply_bad_image_policy(records, find_bad_images(records), on_bad_image, max_bad_images,
                                  switches=("--on-bad-image skip", "--max-bad-images"))


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); an all-zero row stays zero instead of becoming NaN."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def extract_records(loaded_model, records: list, batch_size: int = 64, workers: int = 0,
                    progress: bool = True, desc: str = "extract") -> FolderFeatures:
    """Embed ``records`` with ``loaded_model`` (a ``trytry_reid.inference.LoadedModel``).

    Uses the same ``extract_features`` as evaluation, so features equal the ones ``evaluate`` computes.
    ``workers`` > 0 decodes images in that many DataLoader processes; ``progress`` shows a tqdm bar.
    """
    from trytry_reid.evaluation.features import extract_features

    device = str(next(loaded_model.model.parameters()).device)
    features = extract_features(loaded_model.model, records, loaded_model.transform(), batch_size=batch_size,
                                workers=workers, device=device, progress=progress, desc=desc)
    return FolderFeatures(
        features=l2_normalise(features),
        paths=[r.path for r in records],
        pids=np.array([r.pid for r in records], dtype=np.int64),
        camids=np.array([r.camid for r in records], dtype=np.int64),
    )


def extract_folder(loaded_model, images_dir: str | Path, batch_size: int = 64, workers: int = 0,
                   progress: bool = True, on_bad_image: str = "error", max_bad_images: int = 100) -> FolderFeatures:
    """Embed every usable image under ``images_dir`` (recursive, sorted); see ``usable_records`` and
    ``extract_records``."""
    records = usable_records(folder_records(images_dir), on_bad_image, max_bad_images)
    return extract_records(loaded_model, records, batch_size, workers, progress, desc=f"extract {Path(images_dir).name}")


def embed_images(loaded_model, paths: list[str | Path]) -> np.ndarray:
    """L2-normalised features [len(paths), D] of a few images (e.g. search queries); ``Embedder.embed``."""
    from trytry_reid.embedder import Embedder

    return Embedder.from_loaded(loaded_model).embed([str(p) for p in paths])


def save_features(result: FolderFeatures, out_path: str | Path) -> Path:
    """Write an ``.npz`` (no pickled objects: paths are stored as a fixed-width unicode array)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("wb") as handle:
        np.savez(handle, features=result.features, paths=np.array(result.paths, dtype=np.str_),
                 pids=result.pids, camids=result.camids)
    return out_path


def load_features(path: str | Path) -> FolderFeatures:
    """Read a file written by ``save_features``; refuses pickled content and names missing keys."""
    from trytry_reid.evaluation.feature_file import FeatureFileError, read_npz

    path = Path(path)
    data = read_npz(path, "features file")
    missing = [key for key in _FEATURE_KEYS if key not in data]
    if missing:
        raise FeatureFileError(f"{path}: features file lacks {missing}; expected keys {list(_FEATURE_KEYS)}")
    features = data["features"]
    if features.ndim != 2 or len(data["paths"]) != len(features):
        raise FeatureFileError(f"{path}: 'features' must be [N, D] with one path per row, "
                               f"got shape {features.shape} and {len(data['paths'])} paths")
    return FolderFeatures(features.astype(np.float32), [str(p) for p in data["paths"]],
                          data["pids"].astype(np.int64), data["camids"].astype(np.int64))
