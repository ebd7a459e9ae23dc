"""Measured training rate of a planner candidate on this hardware.

The planner compares networks by what they cost here, not by a table: a candidate's full
training step (views from uint8 images, forward, backward, optimiser) is timed on synthetic
images of the stored size, as :class:`contrastive.training.budget.PlanTimeBudget` times the
chosen one at the start of training; the fastest of four steps counts, so that candidates
measured moments apart on a noisy host compare fairly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from contrastive.hardware import Hardware
from contrastive.planning.planner import Candidate
from contrastive.training.budget import measure_seconds_per_step, precision_for
from contrastive.training.config import TrainConfig

if TYPE_CHECKING:
    from contrastive.training.module import ContrastiveModule


def measured_rate(
    base: TrainConfig, hardware: Hardware, max_seconds: float
) -> Callable[[Candidate, int, int], float | None]:
    """A ``(candidate, batch_size, stored_size) -> images/s`` function for :func:`plan_recipe`.

    Args:
        base: The configuration the candidates are planned into (method, loss, precision).
        hardware: Where to measure (the first GPU for ``cuda``).
        max_seconds: Time all measurements together may take; once it is spent, further
            candidates get None (not measured) and the planner prices them with the rate
            model its measurements fit (the planner's probing must not eat the budget it
            plans). The first candidate is always measured.
    """
    seconds: list[float] = []  # what each measurement took

    def rate(candidate: Candidate, batch_size: int, stored_size: int) -> float | None:
        if seconds and sum(seconds) >= max_seconds:
            return None
        started = time.perf_counter()
        images_per_second = _measure(candidate, batch_size, stored_size, base, hardware)
        seconds.append(time.perf_counter() - started)
        return images_per_second

    return rate


def candidate_module(
    candidate: Candidate, batch_size: int, stored_size: int, base: TrainConfig
) -> ContrastiveModule:
    """The training module ``base`` becomes with ``candidate``'s network and view size."""
    from contrastive.training.module import ContrastiveModule
    from contrastive.views.batched import BatchedViews

    views = replace(base.views, input_size=candidate.view_size)
    config = base.with_overrides(
        backbone=candidate.backbone_config,
        views=views,
        batch_size=batch_size,
        stored_size=stored_size,
    )
    module = ContrastiveModule(config.to_dict(), view_maker=BatchedViews(views, num_views=2))
    if config.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


def _measure(
    candidate: Candidate, batch_size: int, stored_size: int, base: TrainConfig, hardware: Hardware
) -> float:
    module = candidate_module(candidate, batch_size, stored_size, base)
    device = torch.device("cuda" if hardware.on_gpu else "cpu")
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (batch_size, 3, stored_size, stored_size), dtype=torch.uint8, generator=generator
    )
    batches = [(images, torch.arange(batch_size))]
    # The plan's printout says fp32 or bf16 from ``hardware``: the probe measures the same.
    precision = precision_for(hardware.bf16) if base.precision == "auto" else base.precision
    seconds = measure_seconds_per_step(module, batches, precision, device, steps=4, fastest=True)
    return batch_size / max(seconds, 1e-9)
