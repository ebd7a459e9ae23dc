"""Optimiser and learning-rate schedule: SGD or LARS, linear warm-up then cosine decay."""

from __future__ import annotations

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


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int
) -> CosineWarmupScheduler:
    """Lightly's warm-up + cosine schedule, stepped once per optimiser step."""
    warmup_steps = int(round(config.warmup_fraction * total_steps))
    return CosineWarmupScheduler(
        optimizer, warmup_epochs=warmup_steps, max_epochs=max(total_steps, 1)
    )


def stretch_schedule(scheduler: CosineWarmupScheduler, total_steps: int) -> None:
    """Makes ``scheduler`` end at ``total_steps``; the warm-up keeps its share of the run.

    Lightly's scheduler reads its public ``warmup_epochs`` and ``max_epochs`` (steps here) at
    every step, so the change applies from the next step on.
    """
    share = scheduler.warmup_epochs / max(scheduler.max_epochs, 1)
    scheduler.warmup_epochs = int(round(share * total_steps))
    scheduler.max_epochs = max(total_steps, 1)
