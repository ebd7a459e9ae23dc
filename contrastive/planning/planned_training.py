"""``contrastive.train``: training from Python as ``contrastive train`` does it.

With a ``time_budget`` (and nothing planned yet), the settings left at their
:class:`~contrastive.training.config.TrainConfig` defaults are planned for the folder and
this machine from the CPU-budget recipe, as ``contrastive train --data DIR --time-budget T``
plans the flags not given; the settings given are kept and planned around. Without a
budget, with ``plan=False`` or with ``resume``, it is
:func:`contrastive.training.train.train`, which fits only the number of steps to a budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from contrastive.console import show_messages
from contrastive.data.folder import ImageFolder
from contrastive.errors import ContrastiveError
from contrastive.planning.plan_run import plan_run
from contrastive.recipes import cpu_budget_recipe, with_settings
from contrastive.training.budget import check_time_budget
from contrastive.training.config import TrainConfig, leaf_settings
from contrastive.training.resume import check_new_run_dir
from contrastive.training.train import TrainResult, check_batch_fits, check_image_count
from contrastive.training.train import train as train_as_configured

log = logging.getLogger(__name__)

#: Where the run is and how long it takes: not recipe settings.
_RUN_FIELDS = frozenset({"data", "out", "time_budget"})
#: The run's length, which a time budget plans.
_LENGTH_FIELDS = frozenset({"epochs", "max_steps"})


def train(
    config: TrainConfig, resume: bool = False, plan: bool = True, keep: Iterable[str] = ()
) -> TrainResult:
    """Trains an encoder on ``config.data``; a time budget plans the recipe first.

    Args:
        config: The run's configuration. With ``time_budget`` set, the fields left at
            their defaults are planned (printed with their reasons and saved in
            ``config.yaml``), the others kept.
        resume: Continue the run in ``config.out`` from its last checkpoint (its saved
            settings; nothing is planned again).
        plan: False: train ``config`` as it is (its budget fits only the steps).
        keep: Dotted fields to keep although they hold their default value
            (``"backbone.name"`` for a ResNet-18 asked for by name): a field set to its
            default cannot be told from one left alone.

    Returns:
        The trained module and where everything was written.

    Raises:
        ContrastiveError: For bad input, as :func:`contrastive.training.train.train`, or
            a ``keep`` entry that names no field.
    """
    started = time.perf_counter()
    show_messages()  # the plan is said before training starts
    folder = None
    if plan and not resume and config.time_budget is not None and config.plan is None:
        config, folder = _planned(config, started, keep)
    return train_as_configured(config, resume=resume, budget_started=started, folder=folder)


def given_settings(config: TrainConfig, keep: Iterable[str] = ()) -> dict[str, object]:
    """The settings of ``config`` (by dotted path) that differ from ``TrainConfig()``'s,
    and those named in ``keep``.

    Raises:
        ContrastiveError: If ``keep`` names a field ``TrainConfig`` lacks.
    """
    defaults = leaf_settings(TrainConfig().to_dict())
    values = leaf_settings(config.to_dict())
    unknown = sorted(set(keep) - set(values))
    if unknown:
        raise ContrastiveError(
            f"keep names no field of TrainConfig: {', '.join(unknown)} (dotted paths such as "
            "backbone.name, batch_size)"
        )
    return {
        path: value
        for path, value in values.items()
        if path not in _RUN_FIELDS and (path in keep or defaults.get(path) != value)
    }


def planned_config(
    config: TrainConfig, started: float | None = None, keep: Iterable[str] = ()
) -> TrainConfig:
    """``config`` planned for its ``time_budget``: its given settings on the CPU-budget
    recipe, the rest chosen by :func:`~contrastive.planning.plan_run.plan_run`.

    Args:
        config: A new run's configuration with ``data`` and ``time_budget``.
        started: ``time.perf_counter()`` at which the budget started; None: now.
        keep: Fields to keep at their default value (see :func:`train`).
    """
    return _planned(config, started, keep)[0]


def _planned(
    config: TrainConfig, started: float | None, keep: Iterable[str]
) -> tuple[TrainConfig, ImageFolder]:
    if not config.data:
        raise ContrastiveError("TrainConfig.data is required: the folder of images")
    check_new_run_dir(config.run_dir)  # before planning: that work would be for nothing
    check_time_budget(config.time_budget, "time_budget")
    given = given_settings(config, keep)
    if "epochs" in given or "max_steps" in given:
        # As the CLI says of --epochs with --time-budget: the budget plans the steps.
        log.warning(
            "%s is not used: time_budget %s plans the number of steps itself (give one or "
            "the other)",
            "epochs" if "epochs" in given else "max_steps",
            config.time_budget,
        )
        given = {path: value for path, value in given.items() if path not in _LENGTH_FIELDS}
    base = cpu_budget_recipe(data=config.data, out=config.out, time_budget=config.time_budget)
    recipe = with_settings(base, given)
    folder = ImageFolder.scan(recipe.data)  # listed once, for the plan and the run
    count = min(len(folder), recipe.max_images or len(folder))
    check_image_count(recipe, count, folder.root)
    if "batch_size" in given:  # else the planner fits the batch to the data
        check_batch_fits(recipe, count, folder.root)
    planned, _ = plan_run(recipe, frozenset(given), folder=folder, started=started)
    return planned, folder
