"""k-means clusters of embeddings and a sample grid per cluster."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from sklearn.cluster import KMeans

from contrastive.embeddings import Embeddings
from contrastive.errors import ContrastiveError
from contrastive.explore.images import grid_figure, load_thumbnail, show_image
from contrastive.explore.similarity import unit_rows

CLUSTER_PICKS = ("random", "central")


@dataclass
class Clustering:
    """The result of :func:`cluster_embeddings`.

    Attributes:
        assignments: ``(N,)`` int64 cluster of each row.
        centres: ``(K, D)`` float32 cluster centres, in the unit-normalised space.
    """

    assignments: np.ndarray
    centres: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        """``(K,)`` number of rows in each cluster."""
        return np.bincount(self.assignments, minlength=len(self.centres))


def cluster_embeddings(embeddings: np.ndarray, n_clusters: int, seed: int = 0) -> Clustering:
    """k-means on unit-normalised embeddings (so clusters follow cosine similarity).

    Args:
        embeddings: ``(N, D)`` embeddings.
        n_clusters: Number of clusters, ``1 <= n_clusters <= N``.
        seed: Random seed for the k-means initialisation.

    Returns:
        The cluster assignments and centres.

    Raises:
        ContrastiveError: If ``embeddings`` is not 2-D and finite, or ``n_clusters`` is
            out of range.
    """
    unit = unit_rows(embeddings)
    if not 1 <= n_clusters <= len(unit):
        raise ContrastiveError(
            f"n_clusters must be between 1 and {len(unit)} (the number of "
            f"embeddings), got {n_clusters}"
        )
    kmeans = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(unit)
    return Clustering(
        assignments=kmeans.labels_.astype(np.int64),
        centres=kmeans.cluster_centers_.astype(np.float32),
    )


def plot_clusters(
    dataset: Embeddings,
    assignments: np.ndarray,
    per_cluster: int = 8,
    max_clusters: int = 20,
    pick: str = "random",
    seed: int = 0,
    image_size: int = 64,
) -> Figure:
    """One row of sample images per cluster, largest clusters first.

    Each row is titled with the cluster number, its size and, for labelled sets, its most
    common class and that class's share of the cluster.

    Args:
        dataset: The embedded images.
        assignments: ``(N,)`` cluster of each image (e.g. ``Clustering.assignments``).
        per_cluster: Images per row.
        max_clusters: At most this many rows (the largest clusters).
        pick: ``"random"`` members, or the ``"central"`` ones most similar to the
            cluster's mean direction.
        seed: Random seed for ``"random"``.
        image_size: Side of each thumbnail in pixels.

    Returns:
        The figure.

    Raises:
        ContrastiveError: If ``assignments`` does not give one cluster per image, ``pick``
            is unknown, or ``per_cluster`` or ``max_clusters`` is below 1.
    """
    for name, value in (("per_cluster", per_cluster), ("max_clusters", max_clusters)):
        if value < 1:
            raise ContrastiveError(f"{name} must be at least 1, got {value}")
    clusters = np.asarray(assignments, dtype=np.int64).reshape(-1)
    if clusters.shape != (len(dataset),):
        raise ContrastiveError(
            f"assignments must have one cluster per image "
            f"({len(dataset)}), got shape {clusters.shape}"
        )
    if pick not in CLUSTER_PICKS:
        raise ContrastiveError(f"unknown pick {pick!r}; choose one of {', '.join(CLUSTER_PICKS)}")
    ids, sizes = np.unique(clusters, return_counts=True)
    shown = ids[np.argsort(-sizes, kind="stable")][:max_clusters]
    rng = np.random.default_rng(seed)
    figure, axes = grid_figure(len(shown), per_cluster, title_lines=1)
    for row, cluster in enumerate(shown):
        members = np.flatnonzero(clusters == cluster)
        chosen = _pick_members(dataset, members, per_cluster, pick, rng)
        for col, index in enumerate(chosen):
            show_image(axes[row, col], load_thumbnail(dataset.image_path(int(index)), image_size))
        axes[row, 0].set_title(_describe(dataset, int(cluster), members), loc="left", fontsize=8)
    return figure


def _pick_members(
    dataset: Embeddings, members: np.ndarray, count: int, pick: str, rng: np.random.Generator
) -> np.ndarray:
    if len(members) <= count:
        return members
    if pick == "random":
        return np.sort(rng.choice(members, size=count, replace=False))
    unit = unit_rows(dataset.embeddings[members])
    centre = unit.mean(axis=0)
    return members[np.argsort(-(unit @ centre), kind="stable")[:count]]


def _describe(dataset: Embeddings, cluster: int, members: np.ndarray) -> str:
    text = f"cluster {cluster}: {len(members)} images"
    labels = dataset.labels[members]
    labels = labels[labels >= 0]
    if len(labels):
        counts = np.bincount(labels, minlength=len(dataset.classes))
        top = int(np.argmax(counts))
        text += f", {counts[top] / len(labels):.0%} {dataset.classes[top]}"
    return text
