"""``contrastive.train``: training from Python as ``contrastive train`` does it.

With a ``time_budget`` (and nothing planned yet), the settings left at their
:class:`~contrastive.training.config.TrainConfig` defaults are planned for the folder and
this machine from the CPU-budget recipe, as ``contrastive train --data DIR --time-budget T``
plans the flags not given; the settings given are kept and planned around. Without a
budget, with ``plan=False`` or with ``resume``, it is
:func:`contrastive.training.train.train`, which fits only the number of steps to a budget.
"""

from __future__ import annotations

import time

from contrastive.data.folder import ImageFolder
from contrastive.errors import ContrastiveError
from contrastive.planning.plan_run import plan_run
from contrastive.recipes import cpu_budget_recipe, with_settings
from contrastive.training.config import TrainConfig, leaf_settings
from contrastive.training.resume import check_new_run_dir
from contrastive.training.train import TrainResult, check_batch_fits, check_image_count
from contrastive.training.train import train as train_as_configured

#: Where the run is and how long it takes: not recipe settings.
_RUN_FIELDS = frozenset({"data", "out", "time_budget"})


def train(config: TrainConfig, resume: bool = False, plan: bool = True) -> TrainResult:
    """Trains an encoder on ``config.data``; a time budget plans the recipe first.

    Args:
        config: The run's configuration. With ``time_budget`` set, the fields left at
            their defaults are planned (printed with their reasons and saved in
            ``config.yaml``), the others kept.
        resume: Continue the run in ``config.out`` from its last checkpoint (its saved
            settings; nothing is planned again).
        plan: False: train ``config`` as it is (its budget fits only the steps).

    Returns:
        The trained module and where everything was written.

    Raises:
        ContrastiveError: For bad input, as :func:`contrastive.training.train.train`.
    """
    started = time.perf_counter()
    folder = None
    if plan and not resume and config.time_budget is not None and config.plan is None:
        config, folder = _planned(config, started)
    return train_as_configured(config, resume=resume, budget_started=started, folder=folder)


def given_settings(config: TrainConfig) -> dict[str, object]:
    """The settings of ``config`` (by dotted path) that differ from ``TrainConfig()``'s."""
    defaults = leaf_settings(TrainConfig().to_dict())
    return {
        path: value
        for path, value in leaf_settings(config.to_dict()).items()
        if path not in _RUN_FIELDS and defaults.get(path) != value
    }


def planned_config(config: TrainConfig, started: float | None = None) -> TrainConfig:
    """``config`` planned for its ``time_budget``: its given settings on the CPU-budget
    recipe, the rest chosen by :func:`~contrastive.planning.plan_run.plan_run`.

    Args:
        config: A new run's configuration with ``data`` and ``time_budget``.
        started: ``time.perf_counter()`` at which the budget started; None: now.
    """
    return _planned(config, started)[0]


def _planned(config: TrainConfig, started: float | None) -> tuple[TrainConfig, ImageFolder]:
    if not config.data:
        raise ContrastiveError("TrainConfig.data is required: the folder of images")
    check_new_run_dir(config.run_dir)  # before planning: that work would be for nothing
    given = given_settings(config)
    base = cpu_budget_recipe(data=config.data, out=config.out, time_budget=config.time_budget)
    recipe = with_settings(base, given)
    folder = ImageFolder.scan(recipe.data)  # listed once, for the plan and the run
    count = min(len(folder), recipe.max_images or len(folder))
    check_image_count(recipe, count, folder.root)
    if "batch_size" in given:  # else the planner fits the batch to the data
        check_batch_fits(recipe, count, folder.root)
    planned, _ = plan_run(recipe, frozenset(given), folder=folder, started=started)
    return planned, folder
