"""What to label first: images that cover a folder's embedding space.

* **TypiClust** (Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite
  Strategies Suit High and Low Budgets", ICML 2022): k-means into as many clusters as
  images to pick, then from each cluster its most *typical* image, the one of highest
  typicality ``1 / mean distance to its k nearest neighbours`` within the cluster (k = 20
  as in the paper). With few labels, typical images teach a classifier more than
  unusual ones; one per cluster keeps them diverse. Picks are listed largest cluster first.
* **k-center greedy** (Sener & Savarese, "Active Learning for Convolutional Neural
  Networks: A Core-Set Approach", ICLR 2018): repeatedly pick the image farthest from
  every image picked so far, which shrinks the largest distance from any image to its
  nearest pick (the covering radius). It favours coverage, outliers included.

Distances are Euclidean between unit-length rows (``sqrt(2 - 2 cos)``); neighbours come
from :func:`contrastive.neighbours.top_k`.

Images **already labelled** (``labelled``) count as picks made earlier, as in both papers'
active-learning rounds: k-center greedy starts from them, and TypiClust clusters them with
the folder into ``count + L`` clusters and takes its picks from the clusters holding the
fewest of them (the authors' code). Images of the folder that are the same as a labelled one
(embeddings within :data:`SAME_IMAGE_DISTANCE`) are never picked.

TypiClust's clustering follows the authors' code: full k-means up to
:data:`FULL_KMEANS_MAX_CLUSTERS` clusters, mini-batch k-means above (into 1,000 clusters of
255,000 rows on 2 CPU cores: full 130 s, mini-batch 21 s; 10,000 clusters would take hours
with full k-means).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from contrastive.curation.settings import SELECTION_METHODS
from contrastive.curation.space import unit_tensor
from contrastive.errors import ContrastiveError
from contrastive.neighbours import top_k

#: Neighbours in TypiClust's typicality (the paper's k).
TYPICALITY_NEIGHBOURS = 20

#: Distance under which two unit rows count as one image (float32 rounding of a copy's
#: features sits far below it); it bounds typicality at 1,000 where a cluster is all copies.
SAME_IMAGE_DISTANCE = 1e-3

#: Clusters up to which TypiClust runs full k-means; mini-batch k-means above, as in the
#: authors' implementation (github.com/avihu111/TypiClust, ``pycls/al/typiclust.py``).
FULL_KMEANS_MAX_CLUSTERS = 50
#: Rows per mini-batch k-means step (the authors' 5,000).
KMEANS_BATCH_ROWS = 5000
#: Passes over the rows mini-batch k-means may take (scikit-learn's 100 are for its early
#: stop to end; into 1,000 clusters of CIFAR-10's 50,000 images it stopped within 10, and
#: 3 passes picked images as useful to label; 10,000 picks of 255,000 rows took 13 minutes
#: with 10 passes of 51 steps on 2 busy CPU cores, and 100 passes would take hours).
KMEANS_MAX_PASSES = 10
#: Rows per block when the covering radii are computed (a block x picks score matrix).
RADII_BLOCK_ELEMENTS = 1 << 24


@dataclass
class Selection:
    """Images picked for labeling, in pick order.

    Attributes:
        indices: ``(S,)`` int64 image indices.
        method: ``typiclust`` or ``kcenter``.
        scores: ``(S,)`` float32: the typicality of each pick (TypiClust), or its distance
            to the nearest earlier pick when it was picked (k-center greedy; inf for the first).
        clusters: ``(S,)`` int64 k-means cluster of each pick (TypiClust; -1 for a pick that
            topped up the selection when k-means found fewer distinct clusters).
        cluster_sizes: ``(S,)`` int64 size of that cluster (0 for a top-up pick).
        radii: ``(S,)`` float32 covering radius after each pick: the largest distance from
            any image to its nearest pick so far (or labelled image).
        labelled: Images already labelled that the picks complement (0: none given).
        labelled_in_folder: Images of the folder left out of the picks as the same as a
            labelled image.
    """

    indices: np.ndarray
    method: str
    scores: np.ndarray
    clusters: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cluster_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    radii: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    labelled: int = 0
    labelled_in_folder: int = 0

    def __len__(self) -> int:
        return len(self.indices)


def select(
    embeddings: np.ndarray,
    count: int,
    method: str = "typiclust",
    seed: int = 0,
    labelled: np.ndarray | None = None,
) -> Selection:
    """Picks ``count`` images to label with ``method`` (see the module docstring).

    Args:
        embeddings: ``(N, D)`` embeddings of the folder.
        count: Images to pick.
        method: ``typiclust`` or ``kcenter``.
        seed: k-means seed (TypiClust).
        labelled: ``(L, D)`` embeddings of images already labelled, in the same space (the
            same encoder, centred as ``embeddings`` are); the picks complement them.

    Raises:
        ContrastiveError: On an unknown method, ``count`` outside ``[1, N]`` (less the
            folder's images that are labelled already) or ``labelled`` of another width.
    """
    if method not in SELECTION_METHODS:
        raise ContrastiveError(
            f"unknown selection method {method!r}; choose one of {', '.join(SELECTION_METHODS)}"
        )
    if labelled is not None and len(labelled):
        selection = _complement(embeddings, count, method, seed, labelled)
    elif method == "typiclust":
        selection = typiclust(embeddings, count, seed=seed)
    else:
        selection = kcenter_greedy(embeddings, count)
    # Once the covering radius is 0, every image is a copy of a pick: the picks after that
    # repeat images already picked, which a user asking for `count` should hear.
    covered = np.flatnonzero(selection.radii < SAME_IMAGE_DISTANCE)
    if len(covered) and covered[0] < count - 1:
        distinct = int(covered[0]) + 1
        warnings.warn(
            f"only {distinct} distinct images among {len(embeddings)}: {count - distinct} of "
            f"the {count} picks repeat an image already picked",
            stacklevel=2,
        )
    return selection


def _complement(
    embeddings: np.ndarray, count: int, method: str, seed: int, labelled: np.ndarray
) -> Selection:
    """The selection of :func:`select` beside images already labelled (see the module
    docstring); picks index ``embeddings`` only."""
    pool = np.asarray(embeddings, dtype=np.float32)
    given_rows = np.asarray(labelled, dtype=np.float32)
    if given_rows.ndim != 2 or given_rows.shape[1] != pool.shape[1]:
        raise ContrastiveError(
            f"the labelled images' embeddings have shape {tuple(given_rows.shape)}; the "
            f"folder's have {pool.shape[1]} columns: embed both with the same encoder"
        )
    unit = unit_tensor(np.concatenate([pool, given_rows]))
    folder_count = len(pool)
    labelled_rows = np.arange(folder_count, len(unit), dtype=np.int64)
    same = _same_as_labelled(unit[:folder_count], unit[folder_count:])
    given = np.concatenate([np.flatnonzero(same), labelled_rows])
    _check_count(
        count,
        folder_count - int(same.sum()),
        f"the images in the folder less the {int(same.sum())} already labelled",
    )
    if method == "kcenter":
        selection = _kcenter(unit, count, given)
    else:
        selection = _typiclust(unit, count, given, seed)
    selection.labelled = len(labelled_rows)
    selection.labelled_in_folder = int(same.sum())
    return selection


def _same_as_labelled(folder: Tensor, labelled: Tensor) -> np.ndarray:
    """``(N,)`` bool: folder rows within :data:`SAME_IMAGE_DISTANCE` of a labelled row."""
    _, sims = top_k(folder, labelled, 1, ordered=False)
    distances = (2.0 - 2.0 * sims[:, 0].double()).clamp_min(0.0).sqrt()
    return (distances < SAME_IMAGE_DISTANCE).numpy()


def typicality(unit: Tensor, k: int = TYPICALITY_NEIGHBOURS) -> np.ndarray:
    """``(N,)`` inverse mean Euclidean distance of each unit row to its ``k`` nearest others.

    ``k`` is capped at ``N - 1``; a single row has typicality 0. A mean distance under
    :data:`SAME_IMAGE_DISTANCE` (copies) counts as that distance.
    """
    if len(unit) < 2:
        return np.zeros(len(unit), dtype=np.float32)
    _, sims = top_k(
        unit, unit, min(k, len(unit) - 1), exclude=torch.arange(len(unit)), ordered=False
    )
    distances = (2.0 - 2.0 * sims.double()).clamp_min(0.0).sqrt()
    return (1.0 / distances.mean(dim=1).clamp_min(SAME_IMAGE_DISTANCE)).float().numpy()


def typiclust(
    embeddings: np.ndarray,
    count: int,
    k: int = TYPICALITY_NEIGHBOURS,
    seed: int = 0,
    full_kmeans_max_clusters: int = FULL_KMEANS_MAX_CLUSTERS,
) -> Selection:
    """TypiClust: the most typical image of each of ``count`` k-means clusters.

    Args:
        embeddings: ``(N, D)`` embeddings.
        count: Images to pick (= clusters), in ``[1, N]``.
        k: Neighbours in the typicality, within each cluster.
        seed: k-means seed.
        full_kmeans_max_clusters: Full k-means up to this many clusters, mini-batch
            k-means above (see :func:`kmeans_clusters`).

    Returns:
        The picks, largest cluster first. If k-means finds fewer distinct clusters than
        ``count`` (many identical images), k-center greedy tops the selection up.

    Raises:
        ContrastiveError: If ``count`` is outside ``[1, N]``.
    """
    unit = unit_tensor(embeddings)
    _check_count(count, len(unit))
    return _typiclust(unit, count, np.zeros(0, np.int64), seed, k, full_kmeans_max_clusters)


def _typiclust(
    unit: Tensor,
    count: int,
    given: np.ndarray,
    seed: int,
    k: int = TYPICALITY_NEIGHBOURS,
    full_kmeans_max_clusters: int = FULL_KMEANS_MAX_CLUSTERS,
) -> Selection:
    """TypiClust next to the ``given`` rows (none: plain TypiClust): ``count + len(given)``
    k-means clusters of all rows; one pick, the most typical row not given, from each of the
    ``count`` clusters holding the fewest given rows, the largest first among equals."""
    clusters_wanted = min(len(unit), count + len(given))
    assignments = kmeans_clusters(unit.numpy(), clusters_wanted, seed, full_kmeans_max_clusters)
    sizes = np.bincount(assignments, minlength=clusters_wanted)
    is_given = np.zeros(len(unit), dtype=bool)
    is_given[given] = True
    given_per_cluster = np.bincount(assignments[given], minlength=clusters_wanted)
    open_rows = np.flatnonzero(~is_given)
    open_per_cluster = np.bincount(assignments[open_rows], minlength=clusters_wanted)
    # Members of every cluster from one sort, not one scan of all N rows per cluster.
    by_cluster = open_rows[np.argsort(assignments[open_rows], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(open_per_cluster)])
    chosen = sorted(
        np.flatnonzero(open_per_cluster).tolist(),
        key=lambda c: (given_per_cluster[c], -sizes[c], c),
    )[:count]
    picks, scores = [], []
    for cluster in chosen:
        members = by_cluster[starts[cluster] : starts[cluster + 1]]
        typical = typicality(unit[torch.from_numpy(members)], k)
        best = int(np.argmax(typical))  # the first of equals: the lowest index
        picks.append(int(members[best]))
        scores.append(float(typical[best]))
    order = sorted(
        range(len(picks)),
        key=lambda i: (given_per_cluster[chosen[i]], -sizes[chosen[i]], picks[i]),
    )
    indices = np.asarray([picks[i] for i in order], dtype=np.int64)
    scores_array = np.asarray([scores[i] for i in order], dtype=np.float32)
    cluster_array = np.asarray([chosen[i] for i in order], dtype=np.int64)
    if len(indices) < count:
        extra = _kcenter(unit, count - len(indices), np.concatenate([given, indices]))
        indices = np.concatenate([indices, extra.indices])
        scores_array = np.concatenate([scores_array, np.zeros(len(extra), np.float32)])
        cluster_array = np.concatenate([cluster_array, np.full(len(extra), -1, np.int64)])
    # The radii count the given rows as picks made before.
    radii = _covering_radii(unit, np.concatenate([given, indices]))[len(given) :]
    return Selection(
        indices,
        "typiclust",
        scores_array,
        cluster_array,
        np.where(cluster_array >= 0, sizes[cluster_array.clip(0)], 0).astype(np.int64),
        radii,
    )


def kmeans_clusters(
    unit: np.ndarray,
    count: int,
    seed: int = 0,
    full_kmeans_max_clusters: int = FULL_KMEANS_MAX_CLUSTERS,
) -> np.ndarray:
    """``(N,)`` int64 k-means cluster of each row: full k-means up to
    ``full_kmeans_max_clusters`` clusters, mini-batch k-means above.

    Clusters may come out empty where the rows hold fewer distinct points than ``count``.
    """
    if count == 1:
        return np.zeros(len(unit), dtype=np.int64)
    with warnings.catch_warnings():
        # Fewer distinct points than clusters: TypiClust's k-center top-up handles it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if count <= full_kmeans_max_clusters:
            model = KMeans(n_clusters=count, n_init=1, random_state=seed)
        else:
            model = MiniBatchKMeans(
                n_clusters=count,
                batch_size=KMEANS_BATCH_ROWS,
                # sklearn's default initialises from 3 batches; with more clusters than
                # that holds rows, some centres would start on no data at all.
                init_size=min(len(unit), max(3 * KMEANS_BATCH_ROWS, 3 * count)),
                n_init=1,
                max_iter=KMEANS_MAX_PASSES,
                random_state=seed,
            )
        return model.fit(unit).labels_.astype(np.int64)


def kcenter_greedy(
    embeddings: np.ndarray, count: int, initial: np.ndarray | None = None
) -> Selection:
    """k-center greedy: each pick is the image farthest from all earlier picks.

    Args:
        embeddings: ``(N, D)`` embeddings.
        count: Images to pick, in ``[1, N]`` (``[1, N - len(initial)]`` with ``initial``).
        initial: Images already labeled, which count as picked; by default the first pick is
            the image closest to the mean direction.

    Returns:
        The picks (``initial`` not included) with their distance when picked.

    Raises:
        ContrastiveError: If ``count`` is out of range.
    """
    unit = unit_tensor(embeddings)
    given = np.zeros(0, np.int64) if initial is None else np.asarray(initial, np.int64)
    _check_count(count, len(unit) - len(given))
    return _kcenter(unit, count, given)


def _kcenter(unit: Tensor, count: int, given: np.ndarray) -> Selection:
    nearest = torch.full((len(unit),), torch.inf, dtype=torch.float64)
    taken = torch.zeros(len(unit), dtype=torch.bool)
    for index in given.tolist():
        nearest = torch.minimum(nearest, _distances(unit, index))
        taken[index] = True
    picks, scores, radii = [], [], []
    for _ in range(count):
        if picks or len(given):
            # Never a taken image, even where copies leave every distance at 0.
            candidates = nearest.masked_fill(taken, -1.0)
            pick = int(torch.argmax(candidates))  # the first of equals: the lowest index
        else:
            pick = int(torch.argmax(unit @ unit.mean(dim=0)))
        picks.append(pick)
        taken[pick] = True
        scores.append(float(nearest[pick]))
        nearest = torch.minimum(nearest, _distances(unit, pick))
        radii.append(float(nearest.max()))
    return Selection(
        np.asarray(picks, dtype=np.int64),
        "kcenter",
        np.asarray(scores, dtype=np.float32),
        radii=np.asarray(radii, dtype=np.float32),
    )


def _distances(unit: Tensor, index: int) -> Tensor:
    """``(N,)`` float64 Euclidean distances of every unit row to row ``index``."""
    return (2.0 - 2.0 * (unit @ unit[index]).double()).clamp_min(0.0).sqrt()


def _covering_radii(unit: Tensor, picks: np.ndarray) -> np.ndarray:
    """``(S,)`` the largest distance from any row to its nearest pick among the first s.

    Rows are taken in blocks against all picks at once (a running maximum of similarity
    along the picks), not one pass over every row per pick: 10,000 picks of 255,000 rows
    would read the embeddings 10,000 times.
    """
    picked = unit[torch.from_numpy(np.asarray(picks, dtype=np.int64))]
    block = max(1, RADII_BLOCK_ELEMENTS // max(1, len(picked)))
    lowest = torch.full((len(picked),), torch.inf, dtype=torch.float64)
    for start in range(0, len(unit), block):
        nearest_so_far = torch.cummax(unit[start : start + block] @ picked.T, dim=1).values
        lowest = torch.minimum(lowest, nearest_so_far.min(dim=0).values.double())
    return (2.0 - 2.0 * lowest).clamp_min(0.0).sqrt().numpy().astype(np.float32)


def _check_count(count: int, available: int, what: str = "the images in the folder") -> None:
    if not 1 <= count <= available:
        raise ContrastiveError(
            f"cannot select {count} images: choose between 1 and {available} ({what})"
        )
