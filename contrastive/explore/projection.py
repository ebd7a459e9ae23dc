"""2-D projections of embeddings for plotting: PCA, t-SNE, and UMAP when installed."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from contrastive.errors import ContrastiveError
from contrastive.explore.similarity import unit_rows

PROJECTIONS = ("pca", "tsne", "umap")

# t-SNE on more than ~50 dimensions is slow and no better; PCA first is the usual practice.
_TSNE_INPUT_DIMS = 50


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
            ``sklearn.manifold.TSNE`` or ``umap.UMAP``), e.g. ``perplexity=50``.

    Returns:
        ``(N, 2)`` float32 coordinates.

    Raises:
        ContrastiveError: For an unknown method, fewer than 3 rows, or UMAP without
            umap-learn installed.
    """
    array = np.asarray(embeddings, dtype=np.float32)
    if array.ndim != 2 or len(array) < 3:
        raise ContrastiveError(
            f"need an N x D embeddings array with N >= 3 to project, got shape {array.shape}"
        )
    if method not in PROJECTIONS:
        raise ContrastiveError(
            f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}"
        )
    if normalise:
        array = unit_rows(array)
    if method == "pca":
        coordinates = _pca(array, 2, seed, **options)
    elif method == "tsne":
        coordinates = _tsne(array, seed, **options)
    else:
        coordinates = _umap(array, seed, **options)
    return np.asarray(coordinates, dtype=np.float32)


def _pca(array: np.ndarray, dims: int, seed: int, **options: Any) -> np.ndarray:
    dims = min(dims, *array.shape)
    coordinates = PCA(n_components=dims, random_state=seed, **options).fit_transform(array)
    if coordinates.shape[1] < 2:
        # A 1-dimensional input still gets a plottable second axis.
        coordinates = np.pad(coordinates, ((0, 0), (0, 2 - coordinates.shape[1])))
    return coordinates


def _tsne(array: np.ndarray, seed: int, **options: Any) -> np.ndarray:
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
