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
from contrastive.evaluation.checks import as_tensors, check_feature_pair
from contrastive.evaluation.settings import METRICS, check_temperature
from contrastive.neighbours import top_k


def knn_rankings(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    ks: Sequence[int] = (200,),
    temperature: float = 0.1,
    num_classes: int | None = None,
    metric: str = "cosine",
    chunk_size: int | None = None,
    exclude: Tensor | None = None,
) -> dict[int, Tensor]:
    """Weighted kNN class rankings for several ``k`` from one neighbour search.

    For ``metric="cosine"`` features are L2-normalised, similarity is the dot product and a
    neighbour weighs ``exp(sim / T)``. For ``metric="euclidean"`` neighbours are the closest
    in L2 distance ``d`` and weigh ``exp(-(d - d_nearest) / T)``: the shift by the nearest
    distance changes no ranking but keeps the weights from underflowing on raw pixels.
    Neighbours come from :func:`contrastive.neighbours.top_k` (exact, ties by index).
    Tied class scores (classes without votes) are ordered by ``torch.argsort``, as Lightly
    orders them, so the whole ranking matches ``knn_predict``.

    Args:
        train_features: ``(N, D)`` feature bank (a tensor or NumPy array, as are the other
            arrays).
        train_labels: ``(N,)`` int labels in ``[0, num_classes)``.
        test_features: ``(M, D)`` query features.
        ks: Neighbour counts; each must be in ``[1, N]``.
        temperature: ``T > 0``.
        num_classes: ``C``; defaults to ``max(train_labels) + 1``.
        metric: ``"cosine"`` or ``"euclidean"``.
        chunk_size: Test rows per chunk; defaults to about 128 MiB of similarities.
        exclude: Optional ``(M,)`` bank row that may not vote for each test row
            (leave-one-out scoring when the test features are the bank).

    Returns:
        ``{k: (M, C) int64}``: class indices sorted by weighted vote, most voted first.

    Raises:
        ContrastiveError: On mismatched shapes, NaN or inf features, bad ``k``, ``T`` or
            metric, or a label past ``num_classes``.
    """
    train_features, train_labels, test_features = as_tensors(
        train_features, train_labels, test_features
    )
    if exclude is not None:
        (exclude,) = as_tensors(exclude)
    _check_inputs(train_features, train_labels, test_features, ks, temperature, metric, exclude)
    largest = int(train_labels.max()) if train_labels.numel() else -1
    if num_classes is None:
        num_classes = largest + 1
    elif largest >= num_classes:
        raise ContrastiveError(
            f"kNN train labels up to {largest} need num_classes >= {largest + 1}, got {num_classes}"
        )
    ks = sorted(set(int(k) for k in ks))
    weights, neighbour_labels = _neighbours(
        train_features,
        train_labels.long(),
        test_features,
        ks[-1],
        temperature,
        metric,
        chunk_size,
        exclude,
    )
    rankings: dict[int, Tensor] = {}
    for k in ks:
        scores = torch.zeros(weights.shape[0], num_classes, dtype=weights.dtype)
        scores.scatter_add_(1, neighbour_labels[:, :k], weights[:, :k])
        rankings[k] = scores.argsort(dim=1, descending=True)
    return rankings


def knn_classify(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    metric: str = "cosine",
    exclude: Tensor | None = None,
) -> Tensor:
    """Weighted kNN class ranking for one ``k``; see :func:`knn_rankings`.

    Returns:
        ``(M, C)`` int64 class indices, most voted first (``[:, 0]`` is the prediction).
    """
    return knn_rankings(
        train_features,
        train_labels,
        test_features,
        (k,),
        temperature,
        num_classes,
        metric,
        exclude=exclude,
    )[k]


def _neighbours(
    train_features: Tensor,
    labels: Tensor,
    test_features: Tensor,
    k: int,
    temperature: float,
    metric: str,
    chunk_size: int | None,
    exclude: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Vote weights and labels ``(M, k)`` of the ``k`` nearest training rows, nearest first."""
    train, test = train_features.float(), test_features.float()
    if metric == "cosine":
        train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
        # A vote depends on which neighbours are in, not on their order.
        indices, similarity = top_k(
            test, train, k, exclude=exclude, chunk_rows=chunk_size, ordered=False
        )
        weights = (similarity / temperature).exp()
    else:
        # -|x - y|^2 = 2 x.y - |y|^2 - |x|^2; the last term is constant per query.
        indices, negative_squared = top_k(
            2 * test,
            train,
            k,
            key_bias=-(train * train).sum(dim=1),
            exclude=exclude,
            chunk_rows=chunk_size,
            ordered=False,
        )
        squared = (test * test).sum(dim=1, keepdim=True) - negative_squared
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
    exclude: Tensor | None,
) -> None:
    check_feature_pair(train_features, test_features, "kNN")
    if train_labels.shape != (train_features.shape[0],):
        raise ContrastiveError("kNN needs one train label per train feature")
    if train_labels.numel() and int(train_labels.min()) < 0:
        raise ContrastiveError("kNN train labels must be >= 0 (-1 marks unlabeled images)")
    voters = train_features.shape[0] - (0 if exclude is None else 1)
    # Worded as the parameters: the CLI's --k and --temperature pass them on unchanged.
    if not ks or min(ks) < 1 or max(ks) > voters:
        raise ContrastiveError(
            f"k values must lie in [1, {voters}] (the train images that vote), got {list(ks)}"
        )
    check_temperature(temperature)
    if metric not in METRICS:
        raise ContrastiveError(f"unknown kNN metric {metric!r}; choose one of {METRICS}")
