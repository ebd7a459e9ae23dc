"""Optimiser and learning-rate schedule: SGD or LARS, linear warm-up then cosine decay."""

from __future__ import annotations

import math

import torch
from lightly.models.utils import get_weight_decay_parameters
from lightly.utils.lars import LARS
from lightly.utils.scheduler import CosineWarmupScheduler
from torch import nn

from contrastive.training.config import OptimConfig


def build_optimizer(
    modules: list[nn.Module], config: OptimConfig, batch_size: int
) -> torch.optim.Optimizer:
    """SGD or LARS over ``modules``; biases and normalisation layers get no weight decay."""
    with_decay, without_decay = get_weight_decay_parameters(modules)
    # Momentum encoders are updated by averaging, not by the optimiser.
    with_decay = [p for p in with_decay if p.requires_grad]
    without_decay = [p for p in without_decay if p.requires_grad]
    groups = [
        {"name": "weight_decay", "params": with_decay},
        {"name": "no_weight_decay", "params": without_decay, "weight_decay": 0.0},
    ]
    learning_rate = config.learning_rate(batch_size)
    if config.optimizer == "lars":
        return LARS(
            groups, lr=learning_rate, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.SGD(
        groups, lr=learning_rate, momentum=config.momentum, weight_decay=config.weight_decay
    )


class ContinuableCosineWarmup(CosineWarmupScheduler):
    """Lightly's warm-up + cosine schedule that can be lengthened after a resume without a
    jump of the learning rate (:func:`continue_schedule`).

    The ramp's three numbers are plain attributes, so they are part of the scheduler's
    ``state_dict`` and a run resumed again mid-ramp follows the same learning rates as an
    unbroken one. Checkpoints of the plain Lightly scheduler load into it (no ramp).

    Args:
        optimizer: The optimiser whose learning rate is scheduled.
        warmup_epochs: Warm-up steps.
        max_epochs: Total steps.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, warmup_epochs: int, max_epochs: int
    ) -> None:
        # Set before Lightly's constructor, which already computes the first rate.
        self.ramp_start, self.ramp_steps, self.ramp_from = 0, 0, 0.0
        super().__init__(optimizer, warmup_epochs=warmup_epochs, max_epochs=max_epochs)

    def scale_lr(self, epoch: int) -> float:
        """The learning-rate factor at step ``epoch``: Lightly's, or on the ramp towards it."""
        target = super().scale_lr(epoch)
        into_ramp = epoch - self.ramp_start
        if 0 <= into_ramp < self.ramp_steps:
            return self.ramp_from + (target - self.ramp_from) * into_ramp / self.ramp_steps
        return target


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int
) -> ContinuableCosineWarmup:
    """Lightly's warm-up + cosine schedule, stepped once per optimiser step."""
    warmup_steps = int(round(config.warmup_fraction * total_steps))
    return ContinuableCosineWarmup(
        optimizer, warmup_epochs=warmup_steps, max_epochs=max(total_steps, 1)
    )


#: Least share of the remaining steps over which a continued schedule ramps to its curve.
MIN_RAMP_FRACTION = 0.05


def continue_schedule(scheduler: ContinuableCosineWarmup, total_steps: int) -> None:
    """Makes a resumed run's schedule end at ``total_steps`` (more or fewer epochs, or a
    folder whose image count changed) without a jump of the learning rate.

    The schedule becomes the one a run planned for ``total_steps`` from the start would
    follow (:func:`stretch_schedule`), reached by a linear ramp from the current rate. A jump
    to that curve, from the near-zero rate at the end of a finished run to most of the
    peak, is what a warm-up exists to avoid; continuing the old cosine from the current
    rate instead would leave a finished run's added epochs at that near-zero rate. The ramp
    lasts the new schedule's warm-up, and at least ``MIN_RAMP_FRACTION`` of the steps left
    (one step at least, the remaining steps at most).

    Args:
        scheduler: The restored scheduler; ``last_epoch`` is the step training resumes at.
        total_steps: The run's new number of steps, larger than ``scheduler.last_epoch``.
    """
    step = scheduler.last_epoch
    base = scheduler.base_lrs[0]
    # The rate the optimiser holds now (restored with it): the ramp starts where it is.
    current = scheduler.get_last_lr()[0] / base if base else 0.0
    stretch_schedule(scheduler, total_steps)
    left = max(total_steps - step, 1)
    ramp = max(scheduler.warmup_epochs, math.ceil(MIN_RAMP_FRACTION * left), 1)
    scheduler.ramp_start, scheduler.ramp_steps = step, min(ramp, left)
    scheduler.ramp_from = float(current)


def stretch_schedule(scheduler: CosineWarmupScheduler, total_steps: int) -> None:
    """Makes ``scheduler`` end at ``total_steps``; the warm-up keeps its share of the run.

    Lightly's scheduler reads its public ``warmup_epochs`` and ``max_epochs`` (steps here) at
    every step, so the change applies from the next step on.
    """
    share = scheduler.warmup_epochs / max(scheduler.max_epochs, 1)
    scheduler.warmup_epochs = int(round(share * total_steps))
    scheduler.max_epochs = max(total_steps, 1)
