"""Label-free measures of representation quality: pure functions on embedding tensors.

They need no labels, so they can watch a run on an unlabeled folder:

* :func:`effective_rank` (RankMe: Garrido et al., "RankMe: Assessing the Downstream
  Performance of Pretrained Self-Supervised Representations by Their Rank", ICML 2023):
  ``exp`` of the entropy of the normalised singular values; 1 for collapsed embeddings, up
  to ``min(N, D)`` for embeddings spread evenly over all directions.
* :func:`alignment` and :func:`uniformity` (Wang & Isola, "Understanding Contrastive
  Representation Learning through Alignment and Uniformity on the Hypersphere", ICML 2020)
  of L2-normalised embeddings: how close two views of an image land (lower is better, 0 to
  4) and how evenly images cover the sphere (lower is better, 0 when collapsed).
* :func:`normalized_std`: Lightly's ``std_of_l2_normalized``, about ``1/sqrt(D)`` when
  spread, 0 when collapsed.
* :func:`neighbour_overlap` of :func:`nearest_neighbours` between two measurements: the
  share of each image's k nearest neighbours that stayed; near 1 when the representation
  has stopped changing (a plateau detector).
"""

from __future__ import annotations

import math

import torch
from lightly.utils.debug import std_of_l2_normalized
from torch import Tensor

from contrastive.errors import ContrastiveError
from contrastive.neighbours import check_rows, top_k

#: RankMe's epsilon added to the normalised singular values (the paper's value).
RANKME_EPSILON = 1e-7


def _check_matrix(embeddings: Tensor, name: str, min_rows: int = 2) -> None:
    """A finite ``(N, D)`` tensor with ``N >= min_rows`` and ``D >= 1``, or a one-line error."""
    check_rows(embeddings, name)
    if embeddings.shape[0] < min_rows or embeddings.shape[1] < 1:
        raise ContrastiveError(
            f"{name} must be a 2-D (N, D) tensor with N >= {min_rows}, "
            f"got shape {tuple(embeddings.shape)}"
        )


def effective_rank(embeddings: Tensor, epsilon: float = RANKME_EPSILON) -> float:
    """RankMe: ``exp(-sum p_k log p_k)`` with ``p_k = s_k / sum(s) + epsilon``.

    Args:
        embeddings: ``(N, D)`` embeddings (not centred, not normalised, as in the paper).
        epsilon: Added to each normalised singular value.

    Returns:
        The effective rank, between 1 and ``min(N, D)`` (1 for all-zero embeddings).
    """
    _check_matrix(embeddings, "embeddings", min_rows=1)
    singular = torch.linalg.svdvals(embeddings.double())
    total = singular.sum()
    if total <= 0:
        return 1.0
    p = singular / total + epsilon
    return float(torch.exp(-(p * p.log()).sum()))


def _normalize(embeddings: Tensor) -> Tensor:
    return torch.nn.functional.normalize(embeddings.double(), dim=1)


def alignment(first: Tensor, second: Tensor, alpha: float = 2.0) -> float:
    """Wang & Isola's alignment: ``mean ||f(x) - f(y)||^alpha`` over positive pairs.

    Args:
        first: ``(N, D)`` embeddings of one view of N images (normalised here).
        second: ``(N, D)`` embeddings of another view of the same images, row for row.
        alpha: Exponent of the distance (the paper's default 2).

    Returns:
        A value in ``[0, 2^alpha]``; lower means the views of an image agree more.
    """
    _check_matrix(first, "first view embeddings", min_rows=1)
    _check_matrix(second, "second view embeddings", min_rows=1)
    if first.shape != second.shape:
        raise ContrastiveError(
            f"the two views' embeddings differ in shape: {tuple(first.shape)} and "
            f"{tuple(second.shape)}"
        )
    distances = (_normalize(first) - _normalize(second)).norm(dim=1)
    return float(distances.pow(alpha).mean())


def uniformity(embeddings: Tensor, t: float = 2.0) -> float:
    """Wang & Isola's uniformity: ``log mean exp(-t ||f(x) - f(y)||^2)`` over distinct pairs.

    Args:
        embeddings: ``(N, D)`` embeddings (normalised here), ``N >= 2``.
        t: Kernel scale (the paper's default 2).

    Returns:
        A value ``<= 0``; lower means the embeddings cover the sphere more evenly, 0 means
        they all coincide.
    """
    _check_matrix(embeddings, "embeddings")
    squared = torch.pdist(_normalize(embeddings)).pow(2)
    # log-mean-exp, computed stably.
    return float(torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel()))


def normalized_std(embeddings: Tensor) -> float:
    """Lightly's ``std_of_l2_normalized``: mean per-dimension std of L2-normalised rows."""
    _check_matrix(embeddings, "embeddings")
    return float(std_of_l2_normalized(embeddings.float()))


def nearest_neighbours(features: Tensor, k: int) -> Tensor:
    """Each row's ``k`` nearest other rows by cosine similarity (``contrastive.neighbours``).

    Returns:
        ``(N, k)`` int64 row indices: which rows are the ``k`` nearest is exact (ties at the
        k-th place by index); their order inside is the similarity product's, since
        :func:`neighbour_overlap` compares sets.
    """
    _check_matrix(features, "features")
    normalised = torch.nn.functional.normalize(features.float(), dim=1)
    rows = torch.arange(normalised.shape[0], device=normalised.device)
    indices, _scores = top_k(
        normalised, normalised, min(k, len(rows) - 1), exclude=rows, ordered=False
    )
    return indices


def neighbour_overlap(previous: Tensor, current: Tensor) -> float:
    """Mean share of each row's neighbours in ``current`` that were also in ``previous``.

    Args:
        previous: ``(N, k)`` neighbour indices of an earlier measurement.
        current: ``(N, k)`` neighbour indices of the same N images now.

    Returns:
        A value in ``[0, 1]``: 1 when every image kept all its neighbours.
    """
    if previous.ndim != 2 or previous.shape != current.shape or previous.shape[1] < 1:
        raise ContrastiveError(
            f"neighbour lists must both be (N, k) with k >= 1, got {tuple(previous.shape)} "
            f"and {tuple(current.shape)}"
        )
    current = current.to(previous.device)
    kept = (current.unsqueeze(2) == previous.unsqueeze(1)).any(dim=2)
    return float(kept.float().mean())
