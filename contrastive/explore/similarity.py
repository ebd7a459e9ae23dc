"""Cosine similarity search in memory-bounded chunks: neighbours, duplicates, outliers.

Duplicates and outliers live in :mod:`contrastive.curation`; the notebook helpers here
call it.

Nothing here builds the full N x N similarity matrix: neighbours come from the package's one
search, :func:`contrastive.neighbours.top_k`, and the duplicate scan runs in row chunks sized
so that one chunk's similarity block stays under :data:`BLOCK_ELEMENTS` floats (64 MiB),
which keeps 50k x 512 embeddings comfortable on a laptop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from contrastive.curation.duplicates import similar_pairs
from contrastive.curation.outliers import outliers
from contrastive.errors import ContrastiveError
from contrastive.neighbours import top_k

__all__ = [
    "near_duplicates",
    "nearest_neighbours",
    "outliers",
    "rows_per_chunk",
    "top_k_similar",
    "unit_rows",
]

#: Largest similarity block computed at once, in float32 elements.
BLOCK_ELEMENTS = 1 << 24


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Scales rows to unit length so dot products are cosine similarities.

    Args:
        vectors: ``(N, D)`` array.

    Returns:
        ``(N, D)`` float32 array; all-zero rows stay zero (similarity 0 to everything).
    """
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.maximum(norms, np.finfo(np.float32).tiny)


def rows_per_chunk(num_keys: int) -> int:
    """How many query rows fit in one similarity block against ``num_keys`` keys."""
    return max(1, BLOCK_ELEMENTS // max(num_keys, 1))


def top_k_similar(
    queries: np.ndarray,
    keys: np.ndarray,
    k: int,
    exclude: Sequence[int] | np.ndarray | None = None,
    normalise: bool = True,
    chunk_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` keys most cosine-similar to each query, most similar first.

    A NumPy front to :func:`contrastive.neighbours.top_k`: exact, chunked, ties broken by
    key index whatever the chunking or machine.

    Args:
        queries: ``(Q, D)`` query vectors.
        keys: ``(N, D)`` vectors searched.
        k: Neighbours per query.
        exclude: ``(Q,)`` key index to skip for each query (the query itself when queries
            are rows of ``keys``), or None.
        normalise: Set False when both arrays already have unit rows.
        chunk_rows: Queries per block; default keeps blocks under 128 MiB.

    Returns:
        ``(indices, similarities)``: ``(Q, k)`` int64 key indices and ``(Q, k)`` float32
        cosine similarities, sorted by decreasing similarity, then increasing index.

    Raises:
        ContrastiveError: If ``k`` is not in ``[1, available keys]`` or dimensions differ.
    """
    if normalise:
        queries, keys = unit_rows(queries), unit_rows(keys)
    indices, similarities = top_k(
        torch.from_numpy(np.asarray(queries, dtype=np.float32)),
        torch.from_numpy(np.asarray(keys, dtype=np.float32)),
        k,
        exclude=None if exclude is None else torch.as_tensor(np.asarray(exclude, dtype=np.int64)),
        chunk_rows=chunk_rows,
    )
    return indices.numpy(), similarities.numpy()


def nearest_neighbours(
    embeddings: np.ndarray,
    k: int,
    query_indices: Sequence[int] | np.ndarray | None = None,
    chunk_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each query row's ``k`` most cosine-similar other rows of the same set.

    Args:
        embeddings: ``(N, D)`` embeddings.
        k: Neighbours per query (the query itself is never its own neighbour).
        query_indices: ``(Q,)`` rows to query; all rows when None.
        chunk_rows: See :func:`top_k_similar`.

    Returns:
        ``(indices, similarities)``, both ``(Q, k)``, most similar first.
    """
    unit = unit_rows(embeddings)
    queries = (
        np.arange(len(unit)) if query_indices is None else _check_indices(query_indices, len(unit))
    )
    return top_k_similar(
        unit[queries], unit, k, exclude=queries, normalise=False, chunk_rows=chunk_rows
    )


def near_duplicates(
    embeddings: np.ndarray,
    threshold: float = 0.98,
    max_pairs: int = 10_000,
    chunk_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows whose cosine similarity is at least ``threshold``.

    :func:`contrastive.curation.duplicates.similar_pairs` with this module's block budget;
    see there. Groups of copies in pixel space: :mod:`contrastive.curation.duplicates`.
    """
    return similar_pairs(
        embeddings, threshold, max_pairs, chunk_rows or rows_per_chunk(len(embeddings))
    )


def _check_indices(indices: Sequence[int] | np.ndarray, count: int) -> np.ndarray:
    array = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(array) == 0:
        raise ContrastiveError("no query indices given")
    bad = (array < 0) | (array >= count)
    if bad.any():
        raise ContrastiveError(f"query index {int(array[bad][0])} is outside 0..{count - 1}")
    return array
