"""The design document's distance-based contrastive loss, with its sign corrected.

The design document (section 4.2) writes

    L = 1/N sum_i [ d(z_i, z_i+) - log sum_j exp(-d(z_i, z_j-)) ]

Read literally, minimising the second term makes negatives *closer*. The intended loss is
the InfoNCE form without the positive in the denominator, with a temperature tau:

    L = 1/N sum_i [ d(z_i, z_i+) / tau + log sum_j exp(-d(z_i, z_j-) / tau) ]

With the cosine distance ``d = 1 - cos`` the constant cancels and this is exactly the
Decoupled Contrastive Loss (Yeh et al., 2021, https://arxiv.org/abs/2110.06848), Lightly's
``DCLLoss``. With (squared) Euclidean distances between L2-normalised embeddings it is a
different loss: squared Euclidean on the unit sphere is ``2 - 2 cos``, i.e. DCL at half the
temperature; Euclidean ``sqrt(2 - 2 cos)`` weights near and far negatives differently.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.utils import dist
from torch import Tensor, nn

from contrastive.errors import ContrastiveError
from contrastive.losses.config import DISTANCES

# Keeps sqrt differentiable at zero distance (a view compared with itself).
_EPS = 1e-12


def pairwise_distance(a: Tensor, b: Tensor, distance: str) -> Tensor:
    """Distances between the rows of ``a`` and the rows of ``b``.

    Args:
        a: Shape ``(n, d)``.
        b: Shape ``(m, d)``.
        distance: One of :data:`DISTANCES`.

    Returns:
        Shape ``(n, m)``.
    """
    if distance == "cosine":
        return 1.0 - nn.functional.normalize(a, dim=1) @ nn.functional.normalize(b, dim=1).T
    squared = (
        a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a @ b.T
    ).clamp_min(0.0)
    if distance == "squared_euclidean":
        return squared
    return (squared + _EPS).sqrt()


def paired_distance(a: Tensor, b: Tensor, distance: str) -> Tensor:
    """Distances between matching rows: ``(n, d), (n, d) -> (n,)``."""
    if distance == "cosine":
        return 1.0 - nn.functional.cosine_similarity(a, b, dim=1)
    squared = (a - b).pow(2).sum(1)
    if distance == "squared_euclidean":
        return squared
    return (squared + _EPS).sqrt()


class DistanceContrastiveLoss(nn.Module):
    """Contrastive loss on a distance: positives pulled in, negatives pushed out.

    ``loss_i = d(z_i, z_i+) / tau + log sum_j exp(-d(z_i, z_j-) / tau)``, averaged.

    Without a memory bank (SimCLR) the negatives of a view are all views of the other
    images in the batch (both augmentations), and the loss is symmetrised over the two
    views, exactly like Lightly's ``DCLLoss``. With a memory bank (MoCo) ``out0`` are the
    queries, ``out1`` the keys (positives) and the negatives come from the queue, which is
    updated with ``out1`` when ``out0`` requires grad, like Lightly's ``NTXentLoss``.

    Reference: Yeh et al., "Decoupled Contrastive Learning", ECCV 2022 (arXiv:2110.06848).

    Args:
        temperature: ``tau > 0``.
        distance: ``cosine``, ``euclidean`` or ``squared_euclidean``.
        normalize: L2-normalise embeddings first (default), so Euclidean distances are
            bounded; without it the loss can be lowered forever by scaling embeddings up.
        memory_bank_size: ``0`` for in-batch negatives, or ``(num_negatives, dim)``.
        gather_distributed: Gather negatives from all processes (DDP) before the loss.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        distance: str = "cosine",
        normalize: bool = True,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ContrastiveError(f"temperature must be > 0, got {temperature}")
        if distance not in DISTANCES:
            raise ContrastiveError(
                f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}"
            )
        self.temperature = float(temperature)
        self.distance = distance
        self.normalize = normalize
        self.gather_distributed = gather_distributed
        self.memory_bank = MemoryBankModule(
            size=memory_bank_size,
            gather_distributed=gather_distributed,
            feature_dim_first=False,
        )

    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        """Computes the loss.

        Args:
            out0: Embeddings of the first views (queries), shape ``(batch_size, dim)``.
            out1: Embeddings of the second views (keys), shape ``(batch_size, dim)``.

        Returns:
            Scalar mean loss.
        """
        if out0.shape != out1.shape or out0.ndim != 2:
            raise ValueError(f"expected two (batch, dim) tensors, got {out0.shape}, {out1.shape}")
        if self.normalize:
            out0 = nn.functional.normalize(out0, dim=1)
            out1 = nn.functional.normalize(out1, dim=1)
        out1, negatives = self.memory_bank(out1, update=out0.requires_grad)
        if negatives is not None:
            negatives = negatives.to(device=out0.device, dtype=out0.dtype)
            return self._loss(out0, out1, pairwise_distance(out0, negatives, self.distance))
        return 0.5 * (self._in_batch(out0, out1) + self._in_batch(out1, out0))

    def _in_batch(self, anchors: Tensor, positives: Tensor) -> Tensor:
        batch_size = anchors.shape[0]
        if self.gather_distributed and dist.world_size() > 1:
            anchors_all = torch.cat(dist.gather(anchors), 0)
            positives_all = torch.cat(dist.gather(positives), 0)
            first_own = dist.rank() * batch_size  # this rank's rows in the gathered batch
        else:
            anchors_all, positives_all, first_own = anchors, positives, 0
        own_column = torch.arange(first_own, first_own + batch_size, device=anchors.device)
        # Negatives: every view of every other image, both augmentations.
        to_anchors = _without_own_column(
            pairwise_distance(anchors, anchors_all, self.distance), own_column
        )
        to_positives = _without_own_column(
            pairwise_distance(anchors, positives_all, self.distance), own_column
        )
        return self._loss(anchors, positives, torch.cat([to_anchors, to_positives], dim=1))

    def _loss(self, anchors: Tensor, positives: Tensor, negative_distances: Tensor) -> Tensor:
        positive_term = paired_distance(anchors, positives, self.distance) / self.temperature
        negative_term = torch.logsumexp(-negative_distances / self.temperature, dim=1)
        return (positive_term + negative_term).mean()


def _without_own_column(distances: Tensor, own_column: Tensor) -> Tensor:
    """Each row of ``distances`` ``(B, N)`` without the column of its own image: ``(B, N - 1)``.

    A gather with indices computed on the device, where boolean-mask indexing would wait
    for the device to count the selected elements (a host-device sync every step).

    Args:
        distances: Distances of each anchor to every gathered view.
        own_column: ``(B,)`` column of each row's own image.
    """
    others = torch.arange(distances.shape[1] - 1, device=distances.device).expand(
        distances.shape[0], -1
    )
    others = others + (others >= own_column[:, None]).to(others.dtype)
    return torch.gather(distances, 1, others)
