"""Cosine similarity search in memory-bounded chunks: neighbours, duplicates, outliers.

Nothing here builds the full N x N similarity matrix: neighbours come from the package's one
search, :func:`contrastive.neighbours.top_k`, and the duplicate scan runs in row chunks sized
so that one chunk's similarity block stays under :data:`BLOCK_ELEMENTS` floats (64 MiB),
which keeps 50k x 512 embeddings comfortable on a laptop.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from contrastive.errors import ContrastiveError
from contrastive.neighbours import top_k

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


def _chunks(count: int, chunk_rows: int) -> Iterator[slice]:
    for start in range(0, count, chunk_rows):
        yield slice(start, min(start + chunk_rows, count))


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

    Args:
        embeddings: ``(N, D)`` embeddings.
        threshold: Minimum cosine similarity, in ``[-1, 1]``.
        max_pairs: At most this many pairs are kept (the most similar), with a warning,
            so a low threshold cannot exhaust memory.
        chunk_rows: See :func:`top_k_similar`.

    Returns:
        ``(pairs, similarities)``: ``(M, 2)`` int64 row pairs with ``i < j`` and ``(M,)``
        float32 similarities, most similar first.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ContrastiveError(f"threshold must be a cosine similarity in [-1, 1], got {threshold}")
    if max_pairs < 1:
        raise ContrastiveError(f"max_pairs must be at least 1, got {max_pairs}")
    unit = unit_rows(embeddings)
    count = len(unit)
    pairs = np.empty((0, 2), dtype=np.int64)
    sims = np.empty(0, dtype=np.float32)
    dropped = False
    for rows in _chunks(count, chunk_rows or rows_per_chunk(count)):
        # Only the upper triangle: keys from the chunk's first row on, columns past the row.
        block = unit[rows] @ unit[rows.start :].T
        local_rows, local_cols = np.nonzero(block >= threshold)
        upper = local_cols > local_rows
        local_rows, local_cols = local_rows[upper], local_cols[upper]
        found = np.stack([local_rows + rows.start, local_cols + rows.start], axis=1)
        pairs = np.concatenate([pairs, found])
        sims = np.concatenate([sims, block[local_rows, local_cols]])
        if len(sims) > max_pairs:
            keep = np.argpartition(-sims, max_pairs - 1)[:max_pairs]
            pairs, sims, dropped = pairs[keep], sims[keep], True
    if dropped:
        warnings.warn(
            f"more than {max_pairs} pairs reach similarity {threshold}; kept the "
            f"{max_pairs} most similar (raise threshold or max_pairs)",
            stacklevel=2,
        )
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -sims))
    return pairs[order], sims[order]


def outliers(
    embeddings: np.ndarray, k: int = 10, count: int = 20, chunk_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The rows least similar to their own neighbourhood.

    A row's score is its mean cosine similarity to its ``k`` nearest other rows; the
    ``count`` lowest scores are returned.

    Args:
        embeddings: ``(N, D)`` embeddings.
        k: Neighbourhood size.
        count: How many outliers to return (fewer if the set is smaller).
        chunk_rows: See :func:`top_k_similar`.

    Returns:
        ``(indices, scores)``: ``(count,)`` row indices and their scores, lowest first.
    """
    if count < 1:
        raise ContrastiveError(f"count must be at least 1, got {count}")
    _, sims = nearest_neighbours(embeddings, k, chunk_rows=chunk_rows)
    scores = sims.mean(axis=1)
    order = np.argsort(scores, kind="stable")[:count]
    return order, scores[order]


def _check_indices(indices: Sequence[int] | np.ndarray, count: int) -> np.ndarray:
    array = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(array) == 0:
        raise ContrastiveError("no query indices given")
    bad = (array < 0) | (array >= count)
    if bad.any():
        raise ContrastiveError(f"query index {int(array[bad][0])} is outside 0..{count - 1}")
    return array
