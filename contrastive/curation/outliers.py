"""Outliers (images far from everything else) and unusual groups (tiny, isolated clusters).

An image's *neighbourhood similarity* is its mean cosine similarity to its ``k`` nearest
other images (from :func:`contrastive.neighbours.top_k`, chunked, exact); outliers have
the lowest. A lone image is an outlier; a handful of images alike but unlike the rest
support each other and are not: they show up as an *unusual group*, a k-means cluster
much smaller than the average one, ranked by how far its centre is from every other
cluster's centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from contrastive.curation.space import unit_tensor
from contrastive.errors import ContrastiveError
from contrastive.neighbours import top_k_within

#: Mean images per cluster in the unusual-group search (clusters = images / this).
IMAGES_PER_CLUSTER = 20
#: Most clusters in the unusual-group search (k-means cost grows with clusters x images).
MAX_CLUSTERS = 256
#: A cluster counts as tiny at most this fraction of the mean cluster size. Where that is
#: under 2 images the set is too small to tell a group from an ordinary cluster.
TINY_FRACTION = 0.25


def neighbourhood_similarity(
    embeddings: np.ndarray,
    k: int = 10,
    chunk_rows: int | None = None,
    progress: bool = False,
    exact: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's mean cosine similarity to its ``k`` nearest other rows.

    Args:
        embeddings: ``(N, D)`` embeddings.
        k: Neighbourhood size, capped at ``N - 1``.
        chunk_rows: Queries per block of the search (default: memory-bounded).
        progress: Show a progress bar where the search is large.
        exact: Search exactly at any size (approximate above
            :data:`~contrastive.neighbours.APPROXIMATE_ROWS` rows otherwise).

    Returns:
        ``(scores, nearest)``: ``(N,)`` float32 mean similarities and ``(N,)`` int64 index
        of each row's nearest other row.

    Raises:
        ContrastiveError: With fewer than two rows or ``k < 1``.
    """
    unit = unit_tensor(embeddings)
    if len(unit) < 2:
        raise ContrastiveError(f"outliers need at least 2 images, got {len(unit)}")
    if k < 1:
        raise ContrastiveError(f"k must be at least 1, got {k}")
    indices, sims = top_k_within(
        unit,
        min(k, len(unit) - 1),
        chunk_rows=chunk_rows,
        ordered=False,
        progress="neighbourhoods" if progress else None,
        exact=exact,
    )
    nearest = indices.gather(1, sims.argmax(dim=1, keepdim=True))[:, 0]
    return sims.mean(dim=1).numpy(), nearest.numpy()


def outliers(
    embeddings: np.ndarray, k: int = 10, count: int = 20, chunk_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The rows least similar to their own neighbourhood.

    Args:
        embeddings: ``(N, D)`` embeddings.
        k: Neighbourhood size.
        count: How many outliers to return (fewer if the set is smaller).
        chunk_rows: Queries per block of the search.

    Returns:
        ``(indices, scores)``: row indices and their neighbourhood similarities
        (:func:`neighbourhood_similarity`), lowest first, ties by index.

    Raises:
        ContrastiveError: If ``count < 1``.
    """
    if count < 1:
        raise ContrastiveError(f"count must be at least 1, got {count}")
    scores, _ = neighbourhood_similarity(embeddings, k, chunk_rows)
    order = np.argsort(scores, kind="stable")[:count]
    return order, scores[order]


@dataclass
class UnusualGroup:
    """A tiny cluster far from the others.

    Attributes:
        members: ``(M,)`` int64 image indices, most central first.
        isolation: Cosine similarity of the cluster's centre to the nearest other
            cluster centre (lower is more unusual).
    """

    members: np.ndarray
    isolation: float


def unusual_groups(
    embeddings: np.ndarray,
    n_clusters: int | None = None,
    max_size: int | None = None,
    seed: int = 0,
) -> list[UnusualGroup]:
    """Tiny k-means clusters (two or more images), most isolated first.

    Args:
        embeddings: ``(N, D)`` embeddings (clustered by cosine: rows are unit-normalised).
        n_clusters: k-means clusters; None for ``N / 20``, within ``[2, 256]``.
        max_size: Largest cluster that counts as tiny; None for a quarter of the mean
            cluster size. A group has two images or more, so where that quarter is under
            2 (fewer than 8 images per cluster: 15 images or fewer by default) the set is
            too small to tell a tiny cluster from an ordinary one and no group is reported.
        seed: k-means seed.

    Returns:
        The tiny clusters with at least two members, lowest ``isolation`` first.

    Raises:
        ContrastiveError: With fewer than three rows, ``n_clusters`` outside ``[2, N]`` or
            ``max_size`` below 2.
    """
    unit = unit_tensor(embeddings)
    count = len(unit)
    if count < 3:
        raise ContrastiveError(f"unusual groups need at least 3 images, got {count}")
    # "is None", not "or": n_clusters=0 is a mistake to name, not a request for the default.
    if n_clusters is None:
        clusters = int(np.clip(round(count / IMAGES_PER_CLUSTER), 2, MAX_CLUSTERS))
    else:
        clusters = n_clusters
    if not 2 <= clusters <= count:
        raise ContrastiveError(f"n_clusters must be between 2 and {count}, got {clusters}")
    if max_size is not None and max_size < 2:
        raise ContrastiveError(f"max_size must be at least 2 (a group's images), got {max_size}")
    tiny = max_size if max_size is not None else int(TINY_FRACTION * count / clusters)
    if tiny < 2:
        return []
    kmeans = KMeans(n_clusters=clusters, n_init=1, random_state=seed).fit(unit.numpy())
    assignments = kmeans.labels_
    centres = F.normalize(torch.from_numpy(kmeans.cluster_centers_.astype(np.float32)), dim=1)
    centre_sims = centres @ centres.T
    centre_sims.fill_diagonal_(-torch.inf)
    sizes = np.bincount(assignments, minlength=clusters)
    groups = []
    for cluster in np.flatnonzero((sizes >= 2) & (sizes <= tiny)):
        members = np.flatnonzero(assignments == cluster)
        centrality = (unit[torch.from_numpy(members)] @ centres[cluster]).numpy()
        members = members[np.argsort(-centrality, kind="stable")]
        groups.append(UnusualGroup(members, float(centre_sims[cluster].max())))
    return sorted(groups, key=lambda group: (group.isolation, int(group.members.min())))
