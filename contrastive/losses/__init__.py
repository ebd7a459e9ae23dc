"""Contrastive losses: Lightly's NT-Xent and DCL, and the design document's distance loss."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lightly.loss import DCLLoss, NTXentLoss
from torch import nn

from contrastive.errors import ContrastiveError
from contrastive.losses.distance import DISTANCES, DistanceContrastiveLoss

LOSSES = ("ntxent", "distance", "dcl")


@dataclass(frozen=True)
class LossConfig:
    """Which loss, and its parameters.

    Attributes:
        name: ``ntxent`` (Lightly's ``NTXentLoss``), ``distance``
            (:class:`DistanceContrastiveLoss`) or ``dcl`` (Lightly's ``DCLLoss``: NT-Xent
            without the positive pair in the denominator; Yeh et al., "Decoupled
            Contrastive Learning", ECCV 2022; in-batch negatives only).
        temperature: Softmax temperature; ``None``: the method's usual value (SimCLR 0.5,
            MoCo 0.2).
        distance: Distance of the ``distance`` loss: ``cosine``, ``euclidean`` or
            ``squared_euclidean``.
    """

    name: str = "ntxent"
    temperature: float | None = None
    distance: str = "cosine"

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ContrastiveError(f"unknown loss {self.name!r}; choose one of {', '.join(LOSSES)}")
        if self.temperature is not None and not self.temperature > 0:
            raise ContrastiveError(f"temperature must be > 0, got {self.temperature}")
        if self.distance not in DISTANCES:
            raise ContrastiveError(
                f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCES)}"
            )


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


__all__ = ["DISTANCES", "LOSSES", "DistanceContrastiveLoss", "LossConfig", "build_loss"]
