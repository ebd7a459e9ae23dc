"""Configuration of a loss: which one, its temperature and distance.

Apart from the loss modules (torch, Lightly), so that the command line's flags and a run's
``config.yaml`` are read without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass

from contrastive.errors import ContrastiveError

#: The distances of :class:`~contrastive.losses.distance.DistanceContrastiveLoss`.
DISTANCES = ("cosine", "euclidean", "squared_euclidean")
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
