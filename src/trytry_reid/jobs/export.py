"""The export job: a checkpoint -> an ONNX file or an OpenVINO IR, fp32 or INT8, checked before it is kept.

fp32 with ``check_images``: features within 1e-4 of PyTorch and the same top-10 rankings on those images.
INT8 always: calibrated on ``calibration_images``; its top-10 agreement with PyTorch, and the mAP and rank-1
change on each labelled test set of the config (``--check-config``, or the checkpoint's own), failing when mAP
drops by more than ``max_map_drop`` points on any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from trytry_reid.errors import ReidError, UsageError
from trytry_reid.jobs.config import Config
from trytry_reid.serving.inference import LoadedModel, load_model

MAX_CHECK_IMAGES = 256


def accuracy_test_sets(test_config: Callable[[], Config]) -> tuple[Config, list[tuple[str, list, list]]]:
    """The config and the (label, query records, gallery records) of each test set it names; an error says
    how to name other test sets."""
    from trytry_reid.jobs.builders import build_test_sets

    try:
        config = test_config()
        return config, [(label, splits.query, splits.gallery) for label, splits in build_test_sets(config, None)]
    except (ReidError, OSError) as error:
        raise UsageError(f"the INT8 accuracy check needs labelled test sets: {error}; pass --check-config FILE "
                         f"naming test sets on this machine") from error


def check_for(loaded: LoadedModel, *, int8: bool, images: list[str] | None, test_sets, max_map_drop: float,
              batch_size: int, workers: int):
    """The check ``export_model`` runs on the written file (None: nothing to check)."""
    from trytry_reid.serving.export_check import check_accuracy, check_fp32, measure_agreement

    if not int8 and images is None:
        return None

    def check(model) -> dict:
        report = {}
        if images is not None:
            report["check_images"] = (measure_agreement if int8 else check_fp32)(model, loaded, images)
        if int8:
            report["test_sets"] = check_accuracy(model, loaded, test_sets, max_map_drop, batch_size=batch_size,
                                                 workers=workers)
        return report

    return check


def run_export(checkpoint: Path, out: Path, fmt: str = "onnx", *, check_images: Path | None = None,
               int8: bool = False, calibration_images: Path | None = None, calibration_count: int = 300,
               test_config: Callable[[], Config] | None = None,
               max_map_drop: float = 1.0) -> tuple[Path, LoadedModel, dict | None]:
    """Export, check, keep: returns (the written path, the loaded checkpoint, the check's report or None).
    ``test_config`` gives the config whose test sets the INT8 check measures. Every
    input is validated (calibration folder, then test sets) before anything is written."""
    from trytry_reid.serving.export_formats import export_model
    from trytry_reid.serving.folder_images import find_images
    from trytry_reid.serving.quantize import calibration_inputs

    if int8 and test_config is None:
        raise UsageError("an INT8 export needs labelled test sets for its accuracy check (a config)")
    loaded = load_model(checkpoint)
    inputs, test_sets, config = None, [], None
    if int8:
        inputs = calibration_inputs(calibration_images, loaded.transform(), calibration_count)
        config, test_sets = accuracy_test_sets(test_config)
    images = [str(p) for p in find_images(check_images)][:MAX_CHECK_IMAGES] if check_images is not None else None
    check = check_for(loaded, int8=int8, images=images, test_sets=test_sets, max_map_drop=max_map_drop,
                      batch_size=config.test.batch_size if config else 128,
                      workers=config.data.workers if config else 0)
    path, report = export_model(loaded, out, fmt, inputs=inputs, check=check)
    return path, loaded, report
