"""Weighted k-nearest-neighbour classification (Wu et al. 2018), several k in one pass.

Each test feature votes for classes with its ``k`` most similar training features, each
neighbour weighted by ``exp(similarity / T)``. With the cosine metric this is exactly
Lightly's ``knn_predict`` (and the MoCo CIFAR demo it comes from), computed in chunks of test
rows so that the ``(test, train)`` similarity matrix never has to fit in memory at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastive.errors import ContrastiveError

METRICS = ("cosine", "euclidean")

# Similarity entries per chunk: 2**25 floats = 128 MiB, small enough for any machine and
# large enough that the matrix product stays efficient.
_CHUNK_ELEMENTS = 2**25


def knn_rankings(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    ks: Sequence[int] = (200,),
    temperature: float = 0.1,
    num_classes: int | None = None,
    metric: str = "cosine",
    chunk_size: int | None = None,
) -> dict[int, Tensor]:
    """Weighted kNN class rankings for several ``k`` from one neighbour search.

    For ``metric="cosine"`` features are L2-normalised, similarity is the dot product and a
    neighbour weighs ``exp(sim / T)``. For ``metric="euclidean"`` neighbours are the closest
    in L2 distance ``d`` and weigh ``exp(-(d - d_nearest) / T)``: the shift by the nearest
    distance changes no ranking but keeps the weights from underflowing on raw pixels.
    Tied class scores (classes without votes) are ordered by ``torch.argsort``, as Lightly
    orders them, so the whole ranking matches ``knn_predict``.

    Args:
        train_features: ``(N, D)`` feature bank.
        train_labels: ``(N,)`` int labels in ``[0, num_classes)``.
        test_features: ``(M, D)`` query features.
        ks: Neighbour counts; each must be in ``[1, N]``.
        temperature: ``T > 0``.
        num_classes: ``C``; defaults to ``max(train_labels) + 1``.
        metric: ``"cosine"`` or ``"euclidean"``.
        chunk_size: Test rows per chunk; defaults to about 128 MiB of similarities.

    Returns:
        ``{k: (M, C) int64}``: class indices sorted by weighted vote, most voted first.

    Raises:
        ContrastiveError: On mismatched shapes, bad ``k``, ``T`` or metric.
    """
    _check_inputs(train_features, train_labels, test_features, ks, temperature, metric)
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    ks = sorted(set(int(k) for k in ks))
    largest_k = ks[-1]
    labels = train_labels.long()
    train, test = _prepared(train_features, metric), _prepared(test_features, metric)
    train_t = train.T.contiguous()
    train_squared_norms = (train * train).sum(dim=1) if metric == "euclidean" else None
    rows = chunk_size or max(1, _CHUNK_ELEMENTS // max(1, train.shape[0]))
    rankings: dict[int, list[Tensor]] = {k: [] for k in ks}
    for start in range(0, test.shape[0], rows):
        chunk = test[start : start + rows]
        weights, neighbour_labels = _neighbours(
            chunk, train_t, train_squared_norms, labels, largest_k, temperature
        )
        for k in ks:
            scores = torch.zeros(
                chunk.shape[0], num_classes, dtype=weights.dtype, device=weights.device
            )
            scores.scatter_add_(1, neighbour_labels[:, :k], weights[:, :k])
            rankings[k].append(scores.argsort(dim=1, descending=True))
    return {
        k: torch.cat(parts) if parts else torch.empty(0, num_classes, dtype=torch.long)
        for k, parts in rankings.items()
    }


def knn_classify(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    metric: str = "cosine",
) -> Tensor:
    """Weighted kNN class ranking for one ``k``; see :func:`knn_rankings`.

    Returns:
        ``(M, C)`` int64 class indices, most voted first (``[:, 0]`` is the prediction).
    """
    return knn_rankings(
        train_features, train_labels, test_features, (k,), temperature, num_classes, metric
    )[k]


def _prepared(features: Tensor, metric: str) -> Tensor:
    features = features.float()
    return F.normalize(features, dim=1) if metric == "cosine" else features


def _neighbours(
    chunk: Tensor,
    train_t: Tensor,
    train_squared_norms: Tensor | None,
    labels: Tensor,
    k: int,
    temperature: float,
) -> tuple[Tensor, Tensor]:
    """Weights and labels ``(B, k)`` of the ``k`` nearest training rows, nearest first."""
    similarity = chunk @ train_t
    if train_squared_norms is None:
        nearest_similarity, indices = similarity.topk(k, dim=1)
        weights = (nearest_similarity / temperature).exp()
    else:
        # -|x - y|^2 = 2 x.y - |y|^2 - |x|^2; the last term is constant per row.
        similarity.mul_(2).sub_(train_squared_norms)
        negative_squared, indices = similarity.topk(k, dim=1)
        squared = (chunk * chunk).sum(dim=1, keepdim=True) - negative_squared
        distance = squared.clamp_min(0).sqrt()
        weights = (-(distance - distance[:, :1]) / temperature).exp()
    return weights, labels[indices]


def _check_inputs(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    ks: Sequence[int],
    temperature: float,
    metric: str,
) -> None:
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ContrastiveError("kNN features must be 2-D (samples x dimensions)")
    if train_features.shape[1] != test_features.shape[1]:
        raise ContrastiveError(
            f"train and test features differ in width: {train_features.shape[1]} vs "
            f"{test_features.shape[1]}"
        )
    if train_labels.shape != (train_features.shape[0],):
        raise ContrastiveError("kNN needs one train label per train feature")
    if train_labels.numel() and int(train_labels.min()) < 0:
        raise ContrastiveError("kNN train labels must be >= 0 (-1 marks unlabeled images)")
    if not ks or min(ks) < 1 or max(ks) > train_features.shape[0]:
        raise ContrastiveError(
            f"--k values must lie in [1, {train_features.shape[0]}] (the train size), got "
            f"{list(ks)}"
        )
    if not temperature > 0:
        raise ContrastiveError(f"--temperature must be > 0, got {temperature}")
    if metric not in METRICS:
        raise ContrastiveError(f"unknown kNN metric {metric!r}; choose one of {METRICS}")
