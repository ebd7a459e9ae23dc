"""Configuration of a method: projection head sizes and MoCo's queue and momentum."""

from __future__ import annotations

from dataclasses import dataclass

from contrastive.errors import ContrastiveError

#: The methods' names, each a class in :data:`contrastive.methods.METHODS`, and those whose
#: negatives come from a memory bank (MoCo's queue) rather than the other images of the
#: batch. Kept here, apart from the classes, so that ``--help`` and ``contrastive health``
#: read them without importing torch; a test holds them to the classes.
METHOD_NAMES = ("simclr", "moco")
MEMORY_BANK_METHODS = frozenset({"moco"})


@dataclass(frozen=True)
class MethodConfig:
    """Which method, and its parameters.

    Attributes:
        name: The method, a key of :data:`contrastive.methods.METHODS`: ``simclr`` or ``moco``.
        projection_hidden_dim: Hidden width of the projection head (``None``: the
            backbone's feature width).
        projection_output_dim: Output width of the projection head.
        queue_size: MoCo: number of negatives kept in the queue (Lightly's memory bank);
            unset: 4,096, or a quarter of the images each process trains on where that is
            fewer.
        momentum_start: MoCo: momentum of the key encoder at the start of training.
        momentum_end: MoCo: momentum at the end; cosine schedule in between.
    """

    name: str = "simclr"
    projection_hidden_dim: int | None = None
    projection_output_dim: int = 128
    queue_size: int | None = None
    momentum_start: float = 0.99
    momentum_end: float = 1.0

    def __post_init__(self) -> None:
        if self.projection_output_dim < 1:
            raise ContrastiveError("projection_output_dim must be >= 1")
        if self.queue_size is not None and self.queue_size < 1:
            raise ContrastiveError(f"queue_size must be >= 1, got {self.queue_size}")
        if not 0.0 <= self.momentum_start <= self.momentum_end <= 1.0:
            raise ContrastiveError("need 0 <= momentum_start <= momentum_end <= 1")


#: MoCo v2's queue on CIFAR-10 (8% of its 50,000 images).
DEFAULT_QUEUE_SIZE = 4096

#: Largest share of the images one process trains on that the planned queue holds.
QUEUE_SHARE_OF_IMAGES = 0.25


def default_queue_size(images_per_process: int) -> int:
    """MoCo's queue for a data set: 4,096 keys, or a quarter of the images if fewer.

    The queue holds the keys of the last batches. Once it holds about as many keys as
    there are images, each query meets an older key of its own image among its negatives
    and is pushed away from itself: on 1,000 CIFAR-10 images (40 epochs) the loss rose
    from 5.6 to 7.6 with 4,096 keys and kNN top-1 was 4 points lower than with 250
    (``benchmarks/README.md``). At a quarter of the images, an image's own key is a
    negative in about 3% of its steps (``share**2 / 2``, with reshuffled epochs).

    Args:
        images_per_process: Training images one process sees per epoch.
    """
    return max(1, min(DEFAULT_QUEUE_SIZE, int(images_per_process * QUEUE_SHARE_OF_IMAGES)))
