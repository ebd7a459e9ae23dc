"""Configuration of a method: projection head sizes and MoCo's queue and momentum."""

from __future__ import annotations

from dataclasses import dataclass

from contrastive.errors import ContrastiveError


@dataclass(frozen=True)
class MethodConfig:
    """Which method, and its parameters.

    Attributes:
        name: The method, a key of :data:`contrastive.methods.METHODS`: ``simclr`` or ``moco``.
        projection_hidden_dim: Hidden width of the projection head (``None``: the
            backbone's feature width).
        projection_output_dim: Output width of the projection head.
        queue_size: MoCo: number of negatives kept in the queue (Lightly's memory bank).
        momentum_start: MoCo: momentum of the key encoder at the start of training.
        momentum_end: MoCo: momentum at the end; cosine schedule in between.
    """

    name: str = "simclr"
    projection_hidden_dim: int | None = None
    projection_output_dim: int = 128
    queue_size: int = 4096
    momentum_start: float = 0.99
    momentum_end: float = 1.0

    def __post_init__(self) -> None:
        if self.projection_output_dim < 1:
            raise ContrastiveError("projection_output_dim must be >= 1")
        if self.queue_size < 1:
            raise ContrastiveError(f"queue_size must be >= 1, got {self.queue_size}")
        if not 0.0 <= self.momentum_start <= self.momentum_end <= 1.0:
            raise ContrastiveError("need 0 <= momentum_start <= momentum_end <= 1")
