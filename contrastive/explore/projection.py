"""2-D projections of embeddings for plotting: PCA, t-SNE, and UMAP when installed."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from contrastive.embeddings import checked_features
from contrastive.errors import ContrastiveError
from contrastive.explore.similarity import unit_rows

PROJECTIONS = ("pca", "tsne", "umap")

# t-SNE on more than ~50 dimensions is slow and no better; PCA first is the usual practice.
_TSNE_INPUT_DIMS = 50

#: Above this many rows, t-SNE warns that it will take minutes (5,000 rows: 20 s on 2 CPU
#: cores; 10,000: ~76 s on a busy one; 50,000 did not finish in 4 minutes).
TSNE_SLOW_ROWS = 10_000

# Rows closer than this to the first one (relative to the largest value) count as identical:
# the rows of unit-scaled multiples of one vector differ by float32 rounding only.
_SPREAD_TOLERANCE = 1e-5


def project_2d(
    embeddings: np.ndarray,
    method: str = "pca",
    seed: int = 0,
    normalise: bool = True,
    **options: Any,
) -> np.ndarray:
    """Projects embeddings to two dimensions.

    Args:
        embeddings: ``(N, D)`` embeddings, ``N >= 3``.
        method: ``"pca"``, ``"tsne"`` or ``"umap"`` (needs ``pip install contrastive[umap]``).
        seed: Random seed, so the same call gives the same picture.
        normalise: Scale rows to unit length first, so distances follow cosine similarity
            as contrastive training does.
        **options: Passed to the estimator (``sklearn.decomposition.PCA``,
            ``sklearn.manifold.TSNE`` or ``umap.UMAP``), e.g. ``perplexity=50``; they
            override this function's settings (``random_state=1`` overrides ``seed``),
            except ``n_components``, which is always 2.

    Returns:
        ``(N, 2)`` float32 coordinates.

    Raises:
        ContrastiveError: For an unknown method, an array that is not 2-D and finite, fewer
            than 3 rows, rows without spread (all the same direction, which t-SNE cannot
            even start from), ``n_components`` among the options, or UMAP without
            umap-learn installed.
    """
    array = checked_features(embeddings)
    if len(array) < 3:
        raise ContrastiveError(
            f"need an N x D embeddings array with N >= 3 to project, got shape {array.shape}"
        )
    if method not in PROJECTIONS:
        raise ContrastiveError(
            f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}"
        )
    if "n_components" in options:
        raise ContrastiveError(
            f"n_components={options['n_components']!r} cannot be set: project_2d always "
            "projects to 2 dimensions"
        )
    if normalise:
        array = unit_rows(array)
    _check_spread(array, normalise)
    if method == "pca":
        coordinates = _pca(array, 2, seed, **options)
    elif method == "tsne":
        coordinates = _tsne(array, seed, **options)
    else:
        coordinates = _umap(array, seed, **options)
    return np.asarray(coordinates, dtype=np.float32)


def _check_spread(array: np.ndarray, normalised: bool) -> None:
    """Refuses rows that are all the same point.

    t-SNE's PCA initialisation divides by the spread and crashes the process (a dead
    Jupyter kernel) on such input, and PCA only returns zeros: a collapsed run's
    embeddings are better named than drawn as one dot.
    """
    deviation = np.abs(array - array[0]).max()
    if deviation <= _SPREAD_TOLERANCE * max(float(np.abs(array).max()), 1e-30):
        after = " after scaling to unit length" if normalised else ""
        raise ContrastiveError(
            f"the embeddings have no spread: all {len(array)} rows are identical{after} "
            "(a collapsed run?); there is nothing to project"
        )


def _pca(array: np.ndarray, dims: int, seed: int, **options: Any) -> np.ndarray:
    settings = {"random_state": seed, **options, "n_components": min(dims, *array.shape)}
    coordinates = PCA(**settings).fit_transform(array)
    if coordinates.shape[1] < 2:
        # A 1-dimensional input still gets a plottable second axis.
        coordinates = np.pad(coordinates, ((0, 0), (0, 2 - coordinates.shape[1])))
    return coordinates


def _tsne(array: np.ndarray, seed: int, **options: Any) -> np.ndarray:
    if len(array) > TSNE_SLOW_ROWS:
        # A notebook cell that runs for half an hour with no word looks hung.
        warnings.warn(
            f"t-SNE of {len(array):,} points takes many minutes (it grows faster than the "
            "count: 5,000 points take ~20 s on 2 CPU cores); PCA is instant, UMAP "
            "(pip install contrastive[umap]) is faster, or project a sample of the rows",
            stacklevel=3,
        )
    if array.shape[1] > _TSNE_INPUT_DIMS and len(array) > _TSNE_INPUT_DIMS:
        array = _pca(array, _TSNE_INPUT_DIMS, seed)
    settings = {
        "perplexity": min(30.0, (len(array) - 1) / 3),
        "init": "pca",
        "learning_rate": "auto",
        "random_state": seed,
    }
    settings.update(options)
    return TSNE(n_components=2, **settings).fit_transform(array)


def _umap(array: np.ndarray, seed: int, **options: Any) -> np.ndarray:
    try:
        import umap
    except ImportError as error:
        raise ContrastiveError(
            "UMAP needs the umap extra: pip install contrastive[umap]"
        ) from error
    settings = {"n_neighbors": min(15, len(array) - 1), "metric": "cosine", "random_state": seed}
    settings.update(options)
    with warnings.catch_warnings():
        # Seeding is deliberate (repeatable maps); UMAP warns that it then runs one thread.
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        return umap.UMAP(n_components=2, **settings).fit_transform(array)
