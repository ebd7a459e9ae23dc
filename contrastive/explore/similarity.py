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
from contrastive.embeddings import checked_features
from contrastive.errors import ContrastiveError
from contrastive.neighbours import top_k

__all__ = [
    "check_indices",
    "near_duplicates",
    "nearest_neighbours",
    "outliers",
    "rows_per_chunk",
    "top_k_similar",
    "unit_rows",
]

#: Largest similarity block computed at once, in float32 elements.
BLOCK_ELEMENTS = 1 << 24


def unit_rows(vectors: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """Scales rows to unit length so dot products are cosine similarities.

    Args:
        vectors: ``(N, D)`` array.
        name: The argument's name in messages.

    Returns:
        ``(N, D)`` float32 array; all-zero rows stay zero (similarity 0 to everything).

    Raises:
        ContrastiveError: If ``vectors`` is not a real 2-D array or holds NaN or inf
            (the check of :class:`~contrastive.embeddings.Embeddings`).
    """
    array = checked_features(vectors, name)
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
        ContrastiveError: If ``k`` is not in ``[1, available keys]``, an array is not 2-D
            and finite, dimensions differ, or ``exclude`` is not one key index per query.
    """
    if normalise:
        queries, keys = unit_rows(queries, "queries"), unit_rows(keys, "keys")
    else:
        queries, keys = checked_features(queries, "queries"), checked_features(keys, "keys")
    if exclude is not None:
        exclude = check_indices(exclude, len(keys), "exclude", allow_mask=False, allow_empty=True)
        if len(exclude) != len(queries):
            raise ContrastiveError(
                f"exclude must give one key index per query ({len(queries)}), got {len(exclude)}"
            )
    indices, similarities = top_k(
        torch.from_numpy(queries),
        torch.from_numpy(keys),
        k,
        exclude=None if exclude is None else torch.from_numpy(exclude),
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
        query_indices: ``(Q,)`` rows to query, or an ``(N,)`` boolean mask of them; all
            rows when None.
        chunk_rows: See :func:`top_k_similar`.

    Returns:
        ``(indices, similarities)``, both ``(Q, k)``, most similar first.

    Raises:
        ContrastiveError: If ``embeddings`` is not 2-D and finite, or a query index is not
            a row (see :func:`check_indices`).
    """
    unit = unit_rows(embeddings)
    queries = (
        np.arange(len(unit))
        if query_indices is None
        else check_indices(query_indices, len(unit), "query_indices")
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


def check_indices(
    indices: Sequence[int] | np.ndarray,
    count: int,
    name: str = "indices",
    allow_mask: bool = True,
    allow_empty: bool = False,
) -> np.ndarray:
    """The one check of row numbers given to exploration functions.

    Args:
        indices: Row numbers, or (with ``allow_mask``) a boolean mask of ``count`` rows
            such as ``dataset.labels == 2``.
        count: Rows there are.
        name: The argument's name in messages.
        allow_mask: Accept a boolean mask; otherwise booleans are refused as non-integers.
        allow_empty: Accept no indices at all.

    Returns:
        ``(Q,)`` int64 row numbers (the mask's True rows, in order).

    Raises:
        ContrastiveError: If the mask has the wrong length, or an index is not a whole
            number in ``0..count - 1`` (negative ones are refused rather than counted
            from the end), or none are given when ``allow_empty`` is False.
    """
    array = np.asarray(indices).reshape(-1)
    if array.dtype == np.bool_ and allow_mask:
        # A mask read as numbers would silently pick rows 0 and 1.
        if len(array) != count:
            raise ContrastiveError(
                f"{name} is a boolean mask of {len(array)} entries, expected one per row ({count})"
            )
        array = np.flatnonzero(array)
    if len(array) == 0:
        if allow_empty:
            return np.zeros(0, dtype=np.int64)
        raise ContrastiveError(f"no {name} given")
    if not np.issubdtype(array.dtype, np.integer):
        kinds = "integer row numbers or a boolean mask" if allow_mask else "integer row numbers"
        raise ContrastiveError(
            f"{name} must be {kinds}, got {array.dtype} values such as {array[0].item()!r}"
        )
    bad = (array < 0) | (array >= count)
    if bad.any():
        raise ContrastiveError(
            f"{name} holds index {int(array[bad][0])}, outside the rows 0..{count - 1}"
        )
    return array.astype(np.int64, copy=False)
