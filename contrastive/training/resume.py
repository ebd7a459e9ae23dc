"""Continuing a run: ``--resume`` decides what is continued, and from where.

A resumed run is the run its folder saved (``config.yaml``): a larger ``--epochs`` (or
``--max-steps`` in a planned run) lengthens it, ``--data`` follows its images to a new
place, the ``--out`` given is its folder (it may have been moved or copied), and any other
setting given is named, by its flag, as ignored. :func:`checkpoint_progress` reads how far
a checkpoint got without loading its tensors, so a finished run is known before anything
is built.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from pytorch_lightning.utilities import rank_zero_only

from contrastive.data.image_files import RUN_MARKER
from contrastive.errors import ContrastiveError
from contrastive.files import same_path
from contrastive.training.config import (
    RECORD_FIELDS,
    TrainConfig,
    leaf_settings,
    load_config_file,
)
from contrastive.training.data_record import DATA_RECORD
from contrastive.training.run_lock import hold_run_folder
from contrastive.training.run_log import RUN_LOG

log = logging.getLogger(__name__)

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
#: Files a run writes; a new run refuses an ``--out`` that holds any of them.
RUN_FILES = ("config.yaml", "backbone.pt", "metrics.csv")


def resolve_resume(config: TrainConfig, resume: bool) -> tuple[TrainConfig, Path | None]:
    """Decides whether to start fresh or continue, never overwriting a finished run silently.

    With ``resume``, the run directory's saved configuration is used (so a resumed run is
    the same run); ``epochs`` may be raised to train longer (``max_steps`` too, in a run
    that has one: a time budget's plan), and the learning-rate schedule then ends at the
    new length (:meth:`ContrastiveModule.on_train_start`). ``data`` may name another
    folder: the run's images, moved (a change of its files is noticed by
    :func:`~contrastive.training.data_record.describe_change`). The run folder is always
    ``config.out``, the folder that holds the checkpoint, whatever ``out`` was saved: a
    run folder can be moved or copied.
    """
    run_dir = config.run_dir
    last = run_dir / LAST_CHECKPOINT
    if resume:
        if not last.is_file():
            raise ContrastiveError(f"nothing to resume: {last} does not exist")
        saved = TrainConfig.from_dict(load_config_file(run_dir / "config.yaml"))
        if not same_path(saved.out, run_dir):
            # A saved relative out would resolve against this working folder, and an
            # absolute one names the folder the run was moved or copied from.
            log.info(
                "--resume: the run continues in %s, the --out given (its config.yaml names %s)",
                run_dir,
                saved.out,
            )
        saved = saved.with_overrides(out=config.out)
        _warn_ignored_on_resume(saved, config)
        remove_partial_writes(run_dir)
        resumed = saved.with_overrides(
            epochs=max(saved.epochs, config.epochs), data=_resumed_data(saved, config)
        )
        if saved.max_steps is not None:
            resumed = _resumed_step_limit(saved, config, resumed)
        return resumed, last
    check_new_run_dir(run_dir)
    return config, None


#: What a run writes before its first checkpoint, besides hidden files (its lock, its
#: marker, partial writes): a folder that holds no more lost at most that first stretch.
BEFORE_FIRST_CHECKPOINT = (
    "config.yaml",
    "metrics.csv",
    "hparams.yaml",
    DATA_RECORD,
    RUN_LOG,
    "checkpoints",
    "tensorboard",
)


def auto_resume(run_dir: Path) -> bool:
    """Whether ``--auto-resume`` continues the run in ``run_dir`` (else a new run starts).

    The same command line then serves a run's first start and every restart after it was
    stopped (a preempted cluster job, a cron entry), and a finished run is left as it is.
    A run stopped before its first checkpoint has nothing to continue from: its files are
    removed here, under the run's lock, so that it can start again (only in a folder that
    holds the run marker, written before any of those files). Any other folder is
    left to the checks of a new run (:func:`check_new_run_dir`).

    Returns:
        True if ``run_dir`` holds ``checkpoints/last.ckpt``.

    Raises:
        ContrastiveError: If another process is training ``run_dir``.
    """
    if (run_dir / LAST_CHECKPOINT).is_file():
        return True
    # Under DDP the other processes start once the first has decided (and written). A
    # folder without the run marker is not a run's (a config.yaml of the user's own, put
    # where the run is to go): it is left to the checks of a new run.
    if not (run_dir / RUN_MARKER).is_file() or rank_zero_only.rank != 0:
        return False
    with hold_run_folder(run_dir):
        names = {path.name for path in run_dir.iterdir() if not path.name.startswith(".")}
        checkpoints = run_dir / "checkpoints"
        # A kept checkpoint (epoch=9.ckpt) without last.ckpt is a trimmed run: not ours to
        # remove. Hidden files in it are partial writes.
        kept = checkpoints.is_dir() and any(
            not path.name.startswith(".") for path in checkpoints.iterdir()
        )
        if not names or kept or not names <= set(BEFORE_FIRST_CHECKPOINT):
            return False
        for name in names:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    log.info(
        "--auto-resume: %s holds a run stopped before its first checkpoint, so nothing to "
        "continue from: it starts again",
        run_dir,
    )
    return False


def check_new_run_dir(run_dir: Path) -> None:
    """Refuses an output folder that a new run would overwrite.

    Raises:
        ContrastiveError: If ``run_dir`` is a file, holds a run to resume, or holds files a
            run writes (a run trimmed of its checkpoints, or a folder of the user's own).
    """
    if run_dir.is_file():
        raise ContrastiveError(f"output path is a file, not a folder: {run_dir}")
    if (run_dir / LAST_CHECKPOINT).exists():
        raise ContrastiveError(
            f"{run_dir} already holds a run; pass --resume (resume=True in Python) to "
            "continue it, or choose a new --out"
        )
    # Only the first process looks: under DDP the others start once it has written.
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if held and rank_zero_only.rank == 0:
        raise ContrastiveError(
            f"{run_dir} already holds {', '.join(held)}; choose a new --out (training "
            "would overwrite them)"
        )
    if rank_zero_only.rank == 0 and run_dir.is_dir():
        # A folder of the user's own (reports, images): the run's files would mix with them.
        # Hidden files (.DS_Store, a refused run's lock) and a refused run's log are no data.
        others = sorted(
            path.name
            for path in run_dir.iterdir()
            if not path.name.startswith(".") and path.name != RUN_LOG
        )
        if others:
            shown = ", ".join(others[:3]) + (" ..." if len(others) > 3 else "")
            raise ContrastiveError(
                f"{run_dir} holds {len(others)} file(s) or folder(s) of no run ({shown}); "
                "choose a new or empty --out, so that the run's files do not mix with them"
            )


def _resumed_data(saved: TrainConfig, given: TrainConfig) -> str:
    """The folder a resumed run reads: the saved one, or ``--data`` where it names another
    (the same images, moved: cluster scratch paths differ per job, folders get renamed)."""
    if not given.data or not saved.data or same_path(given.data, saved.data):
        return saved.data
    new = str(Path(given.data).expanduser().absolute())
    log.info("--resume --data: the run continues on %s instead of %s", new, saved.data)
    return new


def _resumed_step_limit(
    saved: TrainConfig, given: TrainConfig, resumed: TrainConfig
) -> TrainConfig:
    """A run with a step limit (a time budget's plan) is lengthened by ``--max-steps``;
    ``--epochs`` alone leaves it ending at its limit, which is said."""
    saved_steps = saved.max_steps or 0
    if given.max_steps is not None and given.max_steps > saved_steps:
        # The step limit ends the run; its epochs only need to hold the steps.
        return resumed.with_overrides(
            max_steps=given.max_steps,
            epochs=max(resumed.epochs, math.ceil(given.max_steps * saved.epochs / saved_steps)),
        )
    if given.epochs > saved.epochs:
        log.warning(
            "--epochs %d does not lengthen this run: it ends at step %d (max_steps in %s); "
            "pass --max-steps N with --resume to train longer",
            given.epochs,
            saved_steps,
            saved.run_dir / "config.yaml",
        )
    return resumed


def _warn_ignored_on_resume(saved: TrainConfig, given: TrainConfig) -> None:
    """Settings given with ``--resume`` that differ from the run's are not applied: say so,
    naming each by the flag that sets it (``--lr 0.5``), as the user typed it."""
    # Applied by resolve_resume: the length, data (the folder's new place), the run folder,
    # and the step limit where the run has one.
    applied = {"epochs", "out", "data"} | ({"max_steps"} if saved.max_steps is not None else set())
    saved_values, given_values = leaf_settings(saved.to_dict()), leaf_settings(given.to_dict())
    ignored = [
        _as_typed(path, value)
        for path, value in given_values.items()
        if path.partition(".")[0] not in applied and saved_values.get(path) != value
    ]
    if ignored:
        log.warning(
            "--resume continues the run as it was saved; ignored: %s (to train with other "
            "settings, start a new --out with --init-weights %s)",
            ", ".join(ignored),
            saved.run_dir,
        )


#: Flags named otherwise than ``--`` + the field's last name with dashes (kept equal to
#: ``contrastive.cli.train.FLAGS`` by tests/cli/test_train_flags.py).
FLAG_NAMES = {
    "backbone.name": "--backbone",
    "method.name": "--method",
    "loss.name": "--loss",
    "optim.base_learning_rate": "--lr",
    "cache_images": "--cache",
    "checkpoint_every_n_epochs": "--checkpoint-every",
    "monitor_every_n_epochs": "--monitor-every",
}


def flag_name(path: str) -> str:
    """The ``contrastive train`` flag of a dotted config field (``optim.base_learning_rate``
    -> ``--lr``); a field without a flag keeps its name."""
    if path.partition(".")[0] in RECORD_FIELDS:
        return path.partition(".")[0]
    return FLAG_NAMES.get(path, "--" + path.rpartition(".")[2].replace("_", "-"))


def _as_typed(path: str, value: object) -> str:
    """A setting as it is typed: ``--lr 0.5``, ``--crop-scale 0.2 1``, ``--no-cache``."""
    name = flag_name(path)
    if not name.startswith("--"):
        return name
    if isinstance(value, bool):
        return name if value else "--no-" + name[2:]
    return f"{name} {_typed(value)}"


def _typed(value: object) -> str:
    """A value as it is typed after its flag."""
    if isinstance(value, list | tuple):
        return " ".join(_typed(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def remove_partial_writes(run_dir: Path) -> None:
    """Deletes the hidden temporary files a killed run left mid-write (checkpoint-sized)."""
    for folder in (run_dir, run_dir / "checkpoints"):
        for partial in folder.glob(".*.tmp"):
            partial.unlink(missing_ok=True)


@dataclass(frozen=True)
class Progress:
    """How far a checkpoint got: its optimiser steps and the epochs Lightning counts as
    done (``processed``: raised before the end-of-epoch hooks that save checkpoints)."""

    step: int
    epochs: int
    state_dict: dict


def checkpoint_progress(checkpoint: Path) -> Progress | None:
    """Reads how far ``checkpoint`` got, mapping its tensors instead of reading them.

    Returns None for a file that cannot be read so: fitting from it then reports why.
    """
    try:
        saved = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
        epochs = saved["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]
        return Progress(int(saved["global_step"]), int(epochs), saved["state_dict"])
    # Any damage makes torch or the lookups raise almost anything; Lightning says more.
    except Exception:  # noqa: BLE001
        return None


def finished(config: TrainConfig, progress: Progress) -> bool:
    """Whether Lightning would train no step: the rule of its fit loop's ``done``."""
    if config.max_steps is not None:
        return progress.step >= config.max_steps
    return progress.epochs >= config.epochs
