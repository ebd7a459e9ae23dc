"""The losses by name: :func:`build_loss` turns a :class:`~.config.LossConfig` into a module."""

from __future__ import annotations

from collections.abc import Sequence

from lightly.loss import DCLLoss, NTXentLoss
from torch import nn

from contrastive.errors import ContrastiveError
from contrastive.losses.config import LossConfig
from contrastive.losses.distance import DistanceContrastiveLoss


def build_loss(
    config: LossConfig,
    temperature: float,
    memory_bank_size: int | Sequence[int] = 0,
    gather_distributed: bool = False,
) -> nn.Module:
    """Builds the loss module; ``temperature`` is used when ``config.temperature`` is None."""
    tau = config.temperature if config.temperature is not None else temperature
    if config.name == "dcl":
        if memory_bank_size:
            raise ContrastiveError(
                "the dcl loss uses in-batch negatives only: use --loss ntxent or distance "
                "with a memory bank (--method moco)"
            )
        return DCLLoss(temperature=tau, gather_distributed=gather_distributed)
    if config.name == "ntxent":
        return NTXentLoss(
            temperature=tau,
            memory_bank_size=memory_bank_size,
            gather_distributed=gather_distributed,
        )
    return DistanceContrastiveLoss(
        temperature=tau,
        distance=config.distance,
        memory_bank_size=memory_bank_size,
        gather_distributed=gather_distributed,
    )
