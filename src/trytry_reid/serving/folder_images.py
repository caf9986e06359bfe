"""Features for any folder of person crops: list images recursively, read Market-style labels, extract, save.

File names such as ``0002_c1s1_000451_03.jpg`` (Market-1501 / DukeMTMC style: ``<pid>_c<camera>...``) carry
an identity and a 1-based camera number; the camera is returned 0-based, as in ``Record``. Names that do not
follow the pattern get ``pid = camid = -1``. Market's own junk images are also named ``-1_c...`` and so also
read as pid -1, which downstream code treats the same way: "identity unknown".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trytry_reid.data.datasets import IMAGE_SUFFIXES, Record, images_under, market_name_labels
from trytry_reid.evaluation.feature_file import FeatureSet


def find_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive), sorted by their path relative to ``root``; an error naming
    the folder when it is missing or holds none."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"image folder '{root}' does not exist or is not a directory")
    found = images_under(root)
    if not found:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under '{root}'")
    return found


def parse_market_name(name: str) -> tuple[int, int]:
    """(pid, 0-based camid) from a Market-style file name, or (-1, -1) when the name carries none."""
    return market_name_labels(name) or (-1, -1)


def folder_records(root: str | Path) -> list[Record]:
    """``Record(path, pid, camid)`` for every image under ``root``; paths are absolute."""
    records = []
    for path in find_images(root):
        pid, camid = parse_market_name(path.name)
        records.append(Record(str(path.resolve()), pid, camid))
    return records


def usable_records(records: list, on_bad_image: str = "error", max_bad_images: int = 100) -> list:
    """``records`` after training's bad-image policy (``data/validate.py``): a cheap check of every file, then
    ``error`` (raise listing each bad file) or ``skip`` (log each, count them, drop them; raise above the cap)."""
    from trytry_reid.data.validate import apply_bad_image_policy, find_bad_images

    return apply_bad_image_policy(records, find_bad_images(records), on_bad_image, max_bad_images,
                                  switches=("--on-bad-image skip", "--max-bad-images"))


def extract_records(loaded_model, records: list, batch_size: int = 64, workers: int = 0,
                    progress: bool = True, desc: str = "extract") -> FeatureSet:
    """Embed ``records`` with ``loaded_model``: a ``trytry_reid.serving.inference.LoadedModel`` (PyTorch) or
    any engine's ``runtimes.InferenceModel``.

    PyTorch runs the same inference copy as ``evaluate`` (``models/inference_copy.py``), so features equal
    the ones ``evaluate`` computes. ``workers`` > 0 decodes images in that many DataLoader processes;
    ``progress`` shows a tqdm bar.
    """
    from trytry_reid.evaluation.features import embed_records
    from trytry_reid.serving.runtimes import as_inference_model

    model = as_inference_model(loaded_model)
    features = embed_records(model.run, records, model.contract.transform(), batch_size=batch_size,
                             workers=workers, progress=progress, desc=desc)
    return FeatureSet(features=features, paths=[r.path for r in records],
                      pids=np.array([r.pid for r in records], dtype=np.int64),
                      camids=np.array([r.camid for r in records], dtype=np.int64))


def extract_folder(loaded_model, images_dir: str | Path, batch_size: int = 64, workers: int = 0,
                   progress: bool = True, on_bad_image: str = "error", max_bad_images: int = 100) -> FeatureSet:
    """Embed every usable image under ``images_dir`` (recursive, sorted); see ``usable_records`` and
    ``extract_records``."""
    records = usable_records(folder_records(images_dir), on_bad_image, max_bad_images)
    desc = f"extract {Path(images_dir).name}"
    return extract_records(loaded_model, records, batch_size, workers, progress, desc=desc)


def embed_images(loaded_model, paths: list[str | Path]) -> np.ndarray:
    """L2-normalised features [len(paths), D] of a few images (e.g. search queries); ``Embedder.embed``.
    ``loaded_model``: a LoadedModel or any engine's InferenceModel."""
    from trytry_reid.serving.embedder import Embedder
    from trytry_reid.serving.runtimes import as_inference_model

    return Embedder.from_model(as_inference_model(loaded_model)).embed([str(p) for p in paths])
