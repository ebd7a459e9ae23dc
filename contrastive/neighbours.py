"""Exact nearest-neighbour search in memory-bounded chunks, with deterministic ties.

The one neighbour search of the package: the kNN evaluator, exploration (neighbours,
duplicates, outliers, leave-one-out kNN) and curation all call :func:`top_k`.

Queries are processed in row chunks so that one chunk's ``(chunk, keys)`` score block stays
under :data:`BLOCK_ELEMENTS` floats; nothing builds the whole query x key matrix.

Ties are broken by key index, whatever the chunking, thread count or BLAS: a matrix product
may round the same dot product differently depending on the block shape it runs in, so two
identical keys can come out a last bit apart and swap places from one machine to the next.
Candidates whose scores lie within :data:`TIE_TOLERANCE` of a neighbour's are therefore
scored again, one pair at a time, in float64 (products of float32 numbers are exact there
and the sum runs in one fixed order), and the final order is (score descending, index
ascending). The rare row where the tie reaches past the candidates is scored whole in
float64.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from contrastive.errors import ContrastiveError

#: Largest score block computed at once, in float32 elements (128 MiB).
BLOCK_ELEMENTS = 1 << 25

#: Scores closer than this (relative to the largest absolute score of the row, at least 1)
#: count as possibly tied and are recomputed exactly. Rounding of a float32 matrix product
#: of unit vectors stays orders of magnitude below it.
TIE_TOLERANCE = 2e-6

#: Searches of more query x key scores than this show their progress bar when asked
#: (about 10 s of matrix products on 2 CPU cores).
PROGRESS_SCORES = 5 * 10**8

#: Candidates kept beyond ``k`` so that a tie at the k-th place is seen whole.
_EXTRA_CANDIDATES = 8


def check_rows(values: Tensor | np.ndarray, name: str) -> None:
    """Refuses anything but a 2-D ``(rows, features)`` array of finite numbers.

    The one shape and finiteness check of feature arrays: the searches here, curation,
    evaluation, and :func:`contrastive.embeddings.checked_features` (``Embeddings`` and the
    explore functions) call it. A NaN similarity compares false with everything, so a NaN
    row would otherwise be ranked anywhere (``topk`` puts it first) and the answer would
    look fine.

    Args:
        values: The tensor or numpy array to check.
        name: What the caller calls it (plural), e.g. ``"embeddings"`` or ``"queries"``.

    Raises:
        ContrastiveError: If ``values`` is not 2-D or a row holds NaN or inf.
    """
    if values.ndim != 2:
        raise ContrastiveError(
            f"{name} must be 2-D (rows x features), got shape {tuple(values.shape)}"
        )
    finite = torch.isfinite(values) if isinstance(values, Tensor) else np.isfinite(values)
    bad_rows = [row for row, ok in enumerate(finite.all(1).tolist()) if not ok]
    if bad_rows:
        raise ContrastiveError(
            f"{name} contain NaN or inf in {len(bad_rows)} row(s), first row {bad_rows[0]}"
        )


def top_k(
    queries: Tensor,
    keys: Tensor,
    k: int,
    key_bias: Tensor | None = None,
    exclude: Tensor | None = None,
    chunk_rows: int | None = None,
    ordered: bool = True,
    progress: str | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``k`` keys of largest score ``queries @ keys.T + key_bias`` for each query.

    Cosine similarity is the score of L2-normalised rows; negative squared Euclidean
    distance up to a per-query constant is ``(2 * queries) @ keys.T - |keys|^2``.

    Args:
        queries: ``(Q, D)`` float tensor.
        keys: ``(N, D)`` float tensor.
        k: Neighbours per query, in ``[1, N]`` (``[1, N - 1]`` with ``exclude``).
        key_bias: Optional ``(N,)`` term added to every score of a key.
        exclude: Optional ``(Q,)`` int64 key index never returned for each query (the
            query itself when queries are rows of ``keys``).
        chunk_rows: Queries per block; by default blocks stay under :data:`BLOCK_ELEMENTS`.
        ordered: With False only *which* keys make the top ``k`` is settled exactly (ties
            at the k-th place by index); keys inside keep the matrix product's order. A
            weighted vote needs no more, and dense banks have many near-ties inside.
        progress: Label of a progress bar over the queries, shown for large searches
            (every query against every key: minutes at 10^5 rows on a CPU); None: none.

    Returns:
        ``(indices, scores)``: ``(Q, k)`` int64 key indices and their ``(Q, k)`` float32
        scores, ordered by score descending, then by key index ascending.

    Raises:
        ContrastiveError: If ``k`` is out of range, either tensor is not 2-D or holds NaN
            or inf, the widths differ, or ``exclude`` is not one key index per query.
    """
    available = _available_keys(queries, keys, k, exclude)
    queries, keys = queries.float(), keys.float()
    bias = None if key_bias is None else key_bias.float()
    # Contiguous: with a transposed view BLAS picks kernels by chunk shape, and scores
    # then differ in the last bit between chunk sizes.
    keys_t = keys.T.contiguous()
    candidates = min(k + _EXTRA_CANDIDATES, available)
    rows = chunk_rows or max(1, BLOCK_ELEMENTS // max(1, keys.shape[0]))
    indices = torch.empty(queries.shape[0], k, dtype=torch.long, device=queries.device)
    scores = torch.empty(queries.shape[0], k, dtype=torch.float32, device=queries.device)
    shown = progress is not None and queries.shape[0] * keys.shape[0] > PROGRESS_SCORES
    bar = tqdm(total=queries.shape[0], desc=progress, unit="image", disable=not shown)
    for start in range(0, queries.shape[0], rows):
        chunk = slice(start, min(start + rows, queries.shape[0]))
        block = queries[chunk] @ keys_t
        if bias is not None:
            block += bias
        if exclude is not None:
            block[torch.arange(block.shape[0], device=block.device), exclude[chunk]] = -torch.inf
        top_scores, top_indices = block.topk(candidates, dim=1)
        del block
        top_indices, top_scores = _settle_ties(
            queries[chunk], keys, bias, exclude, chunk, top_indices, top_scores, k, ordered
        )
        indices[chunk], scores[chunk] = top_indices[:, :k], top_scores[:, :k].float()
        bar.update(chunk.stop - chunk.start)
    bar.close()
    return indices, scores


def _available_keys(queries: Tensor, keys: Tensor, k: int, exclude: Tensor | None) -> int:
    """The keys a query may get (all but an excluded one), after checking the inputs.

    Raises:
        ContrastiveError: If ``k`` is out of range, the tensors are not finite 2-D ones of
            one width, or ``exclude`` is not one key index per query.
    """
    check_rows(queries, "queries")
    check_rows(keys, "keys")
    if queries.shape[1] != keys.shape[1]:
        raise ContrastiveError(
            f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} must have the same "
            "number of dimensions (columns)"
        )
    if exclude is not None:
        if exclude.shape != (queries.shape[0],):
            raise ContrastiveError(
                f"exclude must hold one key index per query ({queries.shape[0]}), got shape "
                f"{tuple(exclude.shape)}"
            )
        outside = (exclude < 0) | (exclude >= keys.shape[0])
        if bool(outside.any()):
            raise ContrastiveError(
                f"exclude index {int(exclude[outside][0])} is outside 0..{keys.shape[0] - 1} "
                "(the keys)"
            )
    available = keys.shape[0] - (1 if exclude is not None else 0)
    if not 1 <= k <= available:
        raise ContrastiveError(f"k must be between 1 and {available} (the keys available), got {k}")
    return available


def _settle_ties(
    queries: Tensor,
    keys: Tensor,
    bias: Tensor | None,
    exclude: Tensor | None,
    chunk: slice,
    indices: Tensor,
    scores: Tensor,
    k: int,
    ordered: bool = True,
) -> tuple[Tensor, Tensor]:
    """Rescores near-tied candidates exactly and orders by (score desc, index asc).

    With ``ordered=False`` only the near-tie run that spans the k-th place is rescored.
    A row without a near-tie (where it matters) is already in its final order once sorted
    by score, so only the rows with one are rescored and reordered: a handful per thousand.

    Returns:
        ``(indices, scores)`` of the candidates, ``scores`` in float32.
    """
    scores = scores.float()
    if not bool((scores[:, :-1] >= scores[:, 1:]).all()):  # topk's output already is
        scores, by_score = scores.sort(dim=1, descending=True)
        indices = indices.gather(1, by_score)
    scale = scores.abs().amax(dim=1, keepdim=True).double().clamp_min(1.0)
    close = (scores[:, :-1].double() - scores[:, 1:].double()) <= TIE_TOLERANCE * scale
    if ordered:
        rows = close.any(dim=1).nonzero().flatten()
    elif k <= close.shape[1]:  # a run that matters crosses the gap after place k
        rows = close[:, k - 1].nonzero().flatten()
    else:  # no candidate past the k-th: nothing can cross
        return indices, scores
    if rows.numel() == 0:
        return indices, scores
    close = close[rows] if ordered else _run_across(close[rows], k)
    row_indices, row_scores = _rescore_ties(
        queries[rows],
        keys,
        bias,
        None if exclude is None else exclude[chunk][rows],
        indices[rows],
        scores[rows].double(),
        scale[rows],
        close,
        k,
    )
    indices, scores = indices.clone(), scores.clone()
    indices[rows], scores[rows] = row_indices, row_scores.float()
    return indices, scores


def _rescore_ties(
    queries: Tensor,
    keys: Tensor,
    bias: Tensor | None,
    exclude: Tensor | None,
    indices: Tensor,
    scores: Tensor,
    scale: Tensor,
    close: Tensor,
    k: int,
) -> tuple[Tensor, Tensor]:
    """Rescores the candidates on either side of each ``close`` gap in float64 and reorders.

    Args:
        queries: ``(R, D)`` queries of the rows with a near-tie.
        keys: ``(N, D)`` all keys.
        bias: Optional ``(N,)`` key bias.
        exclude: Optional ``(R,)`` excluded key of each row.
        indices: ``(R, C)`` candidate keys, by score descending.
        scores: ``(R, C)`` their float64 scores.
        scale: ``(R, 1)`` the rows' tolerance scale.
        close: ``(R, C - 1)`` gaps to settle.
        k: Neighbours wanted.
    """
    tied = torch.zeros_like(close[:, :1]).expand(-1, scores.shape[1]).clone()
    tied[:, :-1] |= close
    tied[:, 1:] |= close
    rows, columns = tied.nonzero(as_tuple=True)
    picked = indices[rows, columns]
    scores[rows, columns] = _exact_scores(queries[rows], keys[picked], bias, picked)
    indices, scores = _order(indices, scores)
    # A tie reaching from the k-th to the last candidate may continue past the candidates.
    last = scores.shape[1] - 1
    available = keys.shape[0] - (1 if exclude is not None else 0)
    if last + 1 < available:
        spill = (scores[:, k - 1] - scores[:, last]) <= TIE_TOLERANCE * scale[:, 0]
        for row in spill.nonzero().flatten().tolist():
            indices[row, :k], scores[row, :k] = _whole_row(
                queries[row], keys, bias, None if exclude is None else exclude[row], k
            )
    return indices, scores


def _run_across(close: Tensor, k: int) -> Tensor:
    """Keeps only the unbroken run of near-ties that contains the gap after place ``k``."""
    if k > close.shape[1]:  # no candidate past the k-th: nothing can cross
        return torch.zeros_like(close)
    after = close[:, k - 1 :].long().cumprod(dim=1).bool()
    before = close[:, : k - 1].flip(1).long().cumprod(dim=1).flip(1).bool()
    before &= close[:, k - 1 : k]
    return torch.cat([before, after], dim=1)


def _order(indices: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """Sorts each row by index, then stably by score descending."""
    by_index = indices.argsort(dim=1)
    indices, scores = indices.gather(1, by_index), scores.gather(1, by_index)
    by_score = scores.argsort(dim=1, descending=True, stable=True)
    return indices.gather(1, by_score), scores.gather(1, by_score)


def _exact_scores(
    queries: Tensor, keys: Tensor, bias: Tensor | None, key_indices: Tensor
) -> Tensor:
    """Row-wise dot products in float64 (exact products, one summation order)."""
    exact = (queries.double() * keys.double()).sum(dim=1)
    if bias is not None:
        exact += bias[key_indices].double()
    return exact


def _whole_row(
    query: Tensor, keys: Tensor, bias: Tensor | None, excluded: Tensor | None, k: int
) -> tuple[Tensor, Tensor]:
    """The exact top ``k`` of one query against every key, ties by index."""
    every = torch.arange(keys.shape[0], device=keys.device)
    exact = _exact_scores(query.expand_as(keys), keys, bias, every)
    if excluded is not None:
        exact[excluded] = -torch.inf
    order = exact.argsort(descending=True, stable=True)[:k]
    return order, exact[order]
