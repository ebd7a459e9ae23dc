"""``plan_run``: the planned configuration of a ``--time-budget`` run, from folder and machine."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import fields, replace

from contrastive.backbone_config import BackboneConfig
from contrastive.data.cache import is_cached
from contrastive.data.folder import ImageFolder
from contrastive.encoder import recorded_backbone_config
from contrastive.hardware import busy_cpu_warning, detect_hardware
from contrastive.planning.folder_stats import FolderStats
from contrastive.planning.planner import Plan, describe_backbone, plan_recipe
from contrastive.planning.probe import measured_rate
from contrastive.training.budget import is_bare_number, parse_duration
from contrastive.training.config import TrainConfig
from contrastive.training.train import expected_world_size

log = logging.getLogger(__name__)

#: Share of the budget the candidates' probes may take together (at most ``PROBE_SECONDS``).
PROBE_SHARE = 0.03
PROBE_SECONDS = 20.0


def plan_run(
    config: TrainConfig,
    fixed: Iterable[str] = (),
    folder: ImageFolder | None = None,
    started: float | None = None,
) -> tuple[TrainConfig, Plan]:
    """Plans ``config`` for its ``time_budget`` on its ``data`` and this machine.

    Args:
        config: A configuration with ``data`` and ``time_budget`` set (the user's flags
            applied to a recipe).
        fixed: Dotted paths of the settings the user chose; they are kept. With
            ``init_weights`` the backbone is kept too: the weights fit one architecture
            (the run's own, when they come from one of our runs).
        folder: ``config.data`` already scanned; scanned here when None.
        started: ``time.perf_counter()`` at which the budget started (the command's start):
            what imports, scanning and the probes took is not there to train. None: now.

    Returns:
        ``(planned configuration, plan)``; the configuration records the plan's decisions
        in its ``plan`` field (saved in ``config.yaml``).

    Raises:
        ContrastiveError: For a missing or empty folder, or an unreadable budget.
    """
    budget = parse_duration(config.time_budget or 0)
    if config.init_weights:
        config, fixed = _keep_architecture_of_weights(config, frozenset(fixed))
    if folder is None:
        folder = ImageFolder.scan(config.data)
    stats = FolderStats.from_paths(folder.paths)
    hardware = detect_hardware(config.accelerator, expected_world_size(config))
    busy = busy_cpu_warning(hardware)
    if busy is not None:
        log.warning(busy)
    rate = measured_rate(config, hardware, max_seconds=min(PROBE_SHARE * budget, PROBE_SECONDS))
    paths = folder.paths

    def decoded(stored_size: int) -> bool:
        return is_cached(paths, stored_size, config.cache_dir)

    # Start-up is a fixed cost (~11 s on 2 cores, 5-6 s of it imports): a tenth of a minute's
    # budget, so passes planned from the whole budget read ~20% high at 1 minute.
    spent = 0.0 if started is None else max(time.perf_counter() - started, 0.0)
    if spent >= budget:
        # Still planned (a plan to look at), but the run itself stops before its first step;
        # --plan-only had printed "1 s of training" and nothing else.
        log.warning(
            "start-up, scanning and measuring took %.0f s of the %.0f s budget: nothing is "
            "left to train, and the run would refuse to start; give a larger --time-budget",
            spent,
            budget,
        )
    plan = plan_recipe(stats, hardware, max(budget - spent, 1.0), config, fixed, rate, decoded)
    log.info(
        "plan for %s on %s in %s%s:\n%s",
        stats.describe(),
        hardware.describe(),
        # A bare number is seconds: say so ("in 10" read as ten minutes to a user).
        f"{config.time_budget} s" if is_bare_number(config.time_budget) else config.time_budget,
        f" ({spent:.0f} s of it spent starting up, scanning and measuring)" if spent >= 1 else "",
        "\n".join(plan.lines()),
    )
    upscaled = (
        # The plan's own views stay near the images' side (a 8 px folder gets 24 px views).
        stats.upscale_warning(plan.config.views.input_size, planned=True)
        if "views.input_size" in fixed
        else None
    )
    for warning in (stats.elongated_warning(), upscaled):
        if warning is not None:
            log.warning(warning)
    return plan.config.with_overrides(plan=plan.as_dict()), plan


def _keep_architecture_of_weights(
    config: TrainConfig, fixed: frozenset[str]
) -> tuple[TrainConfig, frozenset[str]]:
    """``--init-weights`` fits one network: plan around it instead of choosing another.

    Weights from one of our runs bring their recorded backbone (flags the user set still
    win); weights from elsewhere keep the backbone the flags name.
    """
    names = [field.name for field in fields(BackboneConfig)]
    recorded = recorded_backbone_config(config.init_weights or "")
    if recorded is not None:
        chosen = {
            name: getattr(config.backbone, name) for name in names if f"backbone.{name}" in fixed
        }
        config = config.with_overrides(backbone=replace(recorded, **chosen))
        log.info(
            "planning keeps the backbone of %s: %s",
            config.init_weights,
            describe_backbone(config.backbone),
        )
    return config, fixed | {f"backbone.{name}" for name in names}
