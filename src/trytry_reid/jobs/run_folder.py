"""A training run's folder and its checkpoint: never lose a run, check a resume before writing anything.

* A folder that already holds a run (any of ``RUN_FILES`` / ``RUN_FOLDERS``) is refused unless the user
  passes ``--overwrite``; only then, and only once every other check has passed, are that run's files
  deleted (``delete_run``); other files in the folder are left alone.
* A resume reads its checkpoint once (``load_checkpoint``: a missing, corrupt or non-checkpoint file is a
  CheckpointError naming it) and checks it against the current config before anything is written:
  every config key must be equal except ``RESUMABLE_KEYS`` (``train.epochs`` may grow; evaluation,
  logging, checkpoint cadence, device, loader workers, naming), and the model's tensors must have the
  checkpoint's shapes. The differing keys are named with both values.
* A run that already finished ``train.epochs`` epochs has nothing to resume (``finished_epochs``); asking
  for fewer epochs than it trained is an error.

Plain arguments only (dicts, paths): the training job (``jobs/train.py``) turns the Config into them.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from trytry_reid.engine.state import RESUME_KEYS
from trytry_reid.errors import ReidError

log = logging.getLogger("trytry_reid")

# What a training run writes into its folder; a folder holding any of them holds a run.
RUN_FILES = ("config.yml", "metrics.json", "summary.json", "curves.png")
RUN_FOLDERS = ("checkpoints", "tb", "figures", "evaluation", "calibration")
# Config keys (dotted; a trailing '.' is a whole section) that may differ between a checkpoint and its resume.
RESUMABLE_KEYS = ("train.epochs", "train.eval_every", "train.log_every", "train.checkpoint_keep",
                  "train.checkpoint_every_steps", "train.device", "data.workers", "test.", "output_dir", "name")


class RunExistsError(ReidError, FileExistsError):
    """Training would write into a folder that already holds a run."""


class ResumeError(ReidError, ValueError):
    """A checkpoint that cannot be resumed with this config; the message names the keys and the file."""


def refuse_existing_run(out: Path, overwrite: bool) -> list[str]:
    """The run files found in ``out``; raises RunExistsError when there are some and not ``overwrite``."""
    found = [name for name in RUN_FILES + RUN_FOLDERS if (out / name).exists()]
    if found and not overwrite:
        raise RunExistsError(
            f"output folder {out} already holds a run ({', '.join(found)}); nothing was changed. Continue it "
            f"with --resume, train into another folder (output_dir=...), or pass --overwrite to replace it")
    return found


def delete_run(out: Path, found: list[str]) -> None:
    """``--overwrite``: delete the run files ``found`` by ``refuse_existing_run`` (and nothing else)."""
    if found:
        log.warning("--overwrite: deleting the run in %s (%s)", out, ", ".join(found))
    for name in found:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def resume_path(out: Path, resume: str | None) -> Path | None:
    """The checkpoint ``--resume`` names: ``<out>/checkpoints/last.pt`` for a bare flag, else the given path."""
    if resume is None:
        return None
    path = out / "checkpoints" / "last.pt" if resume == "auto" else Path(resume)
    if not path.exists():
        raise FileNotFoundError(f"--resume: checkpoint {path} does not exist")
    return path


def resumes_in_place(out: Path, checkpoint: Path | None) -> bool:
    """True when ``checkpoint`` is one of ``out``'s own checkpoints (the run continues in its folder)."""
    return checkpoint is not None and checkpoint.resolve().parent == (out / "checkpoints").resolve()


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(stored: dict, current: dict, defaults: dict) -> list[str]:
    """'key: old in the checkpoint, new now' for every key that differs and may not change on resume.

    A key the stored config lacks (written by an older version) counts as its default."""
    stored_flat, current_flat, default_flat = flatten(stored), flatten(current), flatten(defaults)
    lines = []
    for key, value in current_flat.items():
        if any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS):
            continue
        old = stored_flat.get(key, default_flat.get(key))
        if old != value:
            lines.append(f"{key}: {old!r} in the checkpoint, {value!r} now")
    return lines


def check_resume_config(state: dict, current: dict, defaults: dict, checkpoint: Path) -> None:
    """Raise ResumeError naming every key that differs from the checkpoint's config and may not."""
    missing = [key for key in RESUME_KEYS + ("config",) if key not in state]
    if missing:
        raise ResumeError(f"checkpoint {checkpoint} cannot resume training: it lacks {', '.join(missing)} "
                          f"(a weights-only export?)")
    differences = config_differences(state["config"], current, defaults)
    if differences:
        raise ResumeError(
            f"cannot resume {checkpoint} with this config; nothing was changed. These keys differ from the "
            f"checkpoint's: {'; '.join(differences)}. Only these may change on resume: "
            f"{', '.join(k.rstrip('.') + ('.*' if k.endswith('.') else '') for k in RESUMABLE_KEYS)}")


def check_resume_model(state: dict, model: nn.Module, checkpoint: Path) -> None:
    """Raise ResumeError when the checkpoint's model tensors do not fit ``model`` (names and shapes)."""
    mine = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    theirs = {name: tuple(t.shape) for name, t in state["model"].items()}
    problems = [f"{name}: {theirs.get(name)} in the checkpoint, {shape} now"
                for name, shape in mine.items() if theirs.get(name) != shape]
    problems += [f"{name}: only in the checkpoint" for name in theirs if name not in mine]
    if problems:
        raise ResumeError(f"cannot resume {checkpoint}: the model built from this config and data does not fit "
                          f"it ({'; '.join(problems[:5])}{'; ...' if len(problems) > 5 else ''}); did the "
                          f"training identities change?")


def finished_epochs(state: dict, epochs: int, checkpoint: Path) -> int | None:
    """The epochs done when the checkpoint's run has no epoch left before ``epochs``, else None.

    Raises ResumeError when it trained more than ``epochs``."""
    done, partial = int(state["epoch"]), int(state["step_in_epoch"]) > 0
    if done > epochs or (done == epochs and partial):
        raise ResumeError(f"checkpoint {checkpoint} already trained {done} epochs, more than train.epochs="
                          f"{epochs}; resume with train.epochs={done + 1} or more to train longer")
    return done if done == epochs else None


def check_resume_state(state: dict, objects: Any, checkpoint: Path) -> None:
    """Load the checkpoint into the freshly built objects (model, loss, optimizers, schedule, scaler) once,
    before any file is written, so a checkpoint that does not fit fails here, naming why; fit loads it again."""
    from trytry_reid.engine.state import restore_training_state
    from trytry_reid.engine.train import History

    try:
        restore_training_state(state, objects, History())
    except (KeyError, ValueError, RuntimeError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ResumeError(f"cannot resume {checkpoint}: its saved state does not fit the objects built from this "
                          f"config and data ({type(error).__name__}: {detail}); nothing was changed") from error

