"""The Lightning internals training relies on, in one place.

Lightning has no public API for three things training needs:

* moving the end of a run while ``fit`` runs (:class:`~contrastive.training.budget.FillTimeBudget`
  re-plans the steps that fit a time budget): ``Trainer(max_steps=...)`` is read-only after
  construction, so the fit loop's ``max_steps`` and ``max_epochs`` are set directly;
* how many batches of the current epoch have finished their optimiser step, which a checkpoint
  saved mid-epoch stores so a resumed run starts at the next batch
  (:class:`~contrastive.training.resumable.LoaderPosition`);
* the count of stepped batches by which Lightning writes logged values, which a resumed run
  must put back in step with ``global_step`` (:func:`align_logged_steps`).

One more lives beside its use: :mod:`~contrastive.training.metrics_history` subclasses the
CSV logger's ``ExperimentWriter`` (its ``_check_log_dir_exists``, which deletes an earlier
``metrics.csv``, and ``_record_new_keys``) so a resumed run keeps its rows; its tests in
``tests/training/test_resume_history.py`` fail on a Lightning that changes them. Everything
else uses public API (``trainer.max_steps``, ``CSVLogger.log_metrics``, callbacks).
``tests/training/test_lightning_contract.py`` checks every path in :data:`INTERNALS` against
the installed Lightning, so an upgrade that moves one fails there, naming the attribute.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pytorch_lightning as pl

from contrastive.errors import ContrastiveError

#: Each private attribute path (from the ``Trainer``) this module reads or writes.
INTERNALS = (
    "fit_loop.epoch_loop.max_steps",
    "fit_loop.max_epochs",
    "fit_loop.epoch_loop.batch_progress.current.processed",
    "fit_loop.epoch_loop._batches_that_stepped",
    "fit_loop.epoch_progress.current.started",
)


def set_step_limit(trainer: pl.Trainer, max_steps: int, steps_per_epoch: int) -> None:
    """Ends training after ``max_steps`` optimiser steps; takes effect also during ``fit``.

    ``max_epochs`` follows, so that a longer run is not cut at the old last epoch, and a
    logging interval longer than the run shrinks (:func:`log_interval`): a 32-step budget
    run logged every 50 steps kept no loss or learning rate at all.

    Args:
        trainer: The trainer, before or during ``fit``.
        max_steps: Total optimiser steps of the run.
        steps_per_epoch: Optimiser steps in one epoch.
    """
    _parent(trainer, "fit_loop.epoch_loop.max_steps").max_steps = max_steps
    epochs = max(1, math.ceil(max_steps / max(steps_per_epoch, 1)))
    _parent(trainer, "fit_loop.max_epochs").max_epochs = epochs
    trainer.log_every_n_steps = log_interval(trainer.log_every_n_steps, max_steps)


#: Logged points of a run shorter than its logging interval (every step if it is shorter).
LOGGED_POINTS = 10


def log_interval(interval: int, total_steps: int) -> int:
    """``interval``, or where a run of ``total_steps`` would not reach it (and so log
    nothing), the interval that logs it :data:`LOGGED_POINTS` times."""
    if total_steps >= interval:
        return interval
    return max(1, total_steps // LOGGED_POINTS)


def align_logged_steps(trainer: pl.Trainer) -> None:
    """Sets Lightning's count of stepped batches to ``global_step`` (one optimiser here).

    Lightning writes logged values, and labels the rows of ``metrics.csv``, by that count.
    Restoring a checkpoint saved between two steps (as Ctrl-C saves) counts one batch too
    many, so a resumed run wrote its rows one step off the steps it logged its learning
    rate on: those rows had none. Call after the restore, at the first batch.
    """
    _parent(
        trainer, "fit_loop.epoch_loop._batches_that_stepped"
    )._batches_that_stepped = trainer.global_step


def last_started_epoch(trainer: pl.Trainer) -> int:
    """The epoch in progress, or the one just finished (0 before any started).

    ``current_epoch`` counts completed epochs, which Lightning raises once an epoch's end
    hooks have run: a checkpoint saved when training ends (after the last epoch) read it as
    the next epoch, so a resumed run thought itself one epoch further than it was.
    """
    return max(0, int(_resolve(trainer, "fit_loop.epoch_progress.current.started")) - 1)


def batches_done_this_epoch(trainer: pl.Trainer) -> int:
    """Batches of the current epoch whose optimiser step is complete (also after a resume)."""
    return int(_resolve(trainer, "fit_loop.epoch_loop.batch_progress.current.processed"))


def _parent(trainer: pl.Trainer, path: str) -> Any:
    """The object holding the last attribute of ``path``, checked to have it."""
    parent_path, _, name = path.rpartition(".")
    parent = _resolve(trainer, parent_path)
    if not hasattr(parent, name):
        raise _missing(path)
    return parent


def _resolve(trainer: pl.Trainer, path: str) -> Any:
    try:
        return functools.reduce(getattr, path.split("."), trainer)
    except AttributeError:
        raise _missing(path) from None


def _missing(path: str) -> ContrastiveError:
    # A Lightning the project was not tested with: the user can fix it by installing the pin.
    return ContrastiveError(
        f"pytorch-lightning {pl.__version__} has no Trainer.{path}, which "
        "contrastive/training/lightning_compat.py relies on; install the version pinned in "
        ".ci/constraints.txt or adapt that module"
    )
