"""Exact nearest-neighbour search in memory-bounded chunks, with deterministic ties.

The one neighbour search of the package: the kNN evaluator, exploration (neighbours,
duplicates, outliers, leave-one-out kNN) and curation all call :func:`top_k`; curation's
searches of a folder against itself go through :func:`top_k_within`, which turns
approximate (inverted lists) above :data:`APPROXIMATE_ROWS` images.

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

import logging
import math

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from contrastive.errors import ContrastiveError

log = logging.getLogger(__name__)

#: Largest score block computed at once, in float32 elements (128 MiB).
BLOCK_ELEMENTS = 1 << 25

#: Scores closer than this (relative to the largest absolute score of the row, at least 1)
#: count as possibly tied and are recomputed exactly. Rounding of a float32 matrix product
#: of unit vectors stays orders of magnitude below it.
TIE_TOLERANCE = 2e-6

#: Searches of more query x key scores than this show their progress bar when asked
#: (about 10 s of matrix products on 2 CPU cores).
PROGRESS_SCORES = 5 * 10**8

#: Above this many rows, a set searched against itself (:func:`top_k_within`) is searched
#: approximately, through inverted lists.
APPROXIMATE_ROWS = 100_000
#: Inverted lists each row is compared with in the approximate search.
PROBED_LISTS = 32

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


def top_k_within(
    rows: Tensor,
    k: int,
    chunk_rows: int | None = None,
    ordered: bool = True,
    progress: str | None = None,
    seed: int = 0,
    exact: bool = False,
) -> tuple[Tensor, Tensor]:
    """The ``k`` rows of largest score ``rows @ rows.T`` for each row, itself left out.

    Up to :data:`APPROXIMATE_ROWS` rows this is :func:`top_k` of the rows against
    themselves: exact. Above, every row against every row grows with the square of the
    count (about 5 minutes at 255,000 rows on 2 CPU cores, hours at a million), so the
    search is approximate: the rows are split into inverted lists around ``sqrt(N)``
    k-means centres and each row is compared with the rows of its :data:`PROBED_LISTS`
    nearest lists only (about ``32 / sqrt(N)`` of the work: 75 s instead of ~660 s for
    250,000 colour fingerprints). Close pairs (near copies, a row's nearest neighbours)
    share a list or a neighbouring one, so they are found; a neighbour beyond the probed
    lists is missed and replaced by the next one found. On the colour fingerprints of
    CIFAR-10's 50,000 training images searched this way (223 lists): all 2,611 near-copy
    pairs found, each image's nearest image the same for 99.4%, 479 of the 500 lowest mean
    similarities (outliers) the same (``benchmarks/neighbour_search.py``).

    Args:
        rows: ``(N, D)`` float tensor (unit rows: scores are cosine similarities).
        k: Neighbours per row, in ``[1, N - 1]``.
        chunk_rows: Rows per block of the exact search (see :func:`top_k`).
        ordered: See :func:`top_k` (the approximate search always orders by score, then
            index).
        progress: Label of a progress bar, shown for large searches; None: none.
        seed: Seed of the k-means of the approximate search.
        exact: Search exactly at any size (every row against every row).

    Returns:
        ``(indices, scores)``: ``(N, k)`` int64 row indices and float32 scores, by score
        descending, then index ascending.

    Raises:
        ContrastiveError: As :func:`top_k`.
    """
    count = rows.shape[0]
    exclude = torch.arange(count, device=rows.device)
    if exact or count <= APPROXIMATE_ROWS:
        return top_k(
            rows,
            rows,
            k,
            exclude=exclude,
            chunk_rows=chunk_rows,
            ordered=ordered,
            progress=progress,
        )
    _available_keys(rows, rows, k, exclude)
    return _inverted_lists_top_k(rows.float(), k, progress, seed)


def _inverted_lists_top_k(
    rows: Tensor, k: int, progress: str | None, seed: int
) -> tuple[Tensor, Tensor]:
    count = rows.shape[0]
    lists = max(2, math.isqrt(count))
    probes = min(PROBED_LISTS, lists)
    centres = _kmeans_centres(rows, lists, seed)
    nearest_lists, _ = top_k(rows, centres, probes, ordered=False)
    log.info(
        "%d rows: approximate neighbour search, each row against the rows of %d of %d "
        "inverted lists (exact search grows with the square of the rows)",
        count,
        probes,
        lists,
    )
    owner = nearest_lists[:, 0]
    members_order = torch.argsort(owner, stable=True)
    member_bounds = torch.searchsorted(owner[members_order], torch.arange(lists + 1))
    # Every (row, probe slot) pair, grouped by the list it probes.
    probed = nearest_lists.flatten()
    pairs_order = torch.argsort(probed, stable=True)
    pair_bounds = torch.searchsorted(probed[pairs_order], torch.arange(lists + 1))
    # The best k found so far per row, merged list by list: memory stays N x k (a buffer
    # of every probed list's candidates took 5.7 GB at 255,000 rows).
    indices = torch.full((count, k), -1, dtype=torch.long)
    scores = torch.full((count, k), -torch.inf)
    bar = tqdm(total=lists, desc=progress, unit="list", disable=progress is None)
    for list_id in range(lists):
        members = members_order[member_bounds[list_id] : member_bounds[list_id + 1]]
        pairs = pairs_order[pair_bounds[list_id] : pair_bounds[list_id + 1]]
        bar.update(1)
        if members.numel() == 0 or pairs.numel() == 0:
            continue
        keys_t = rows[members].T.contiguous()
        found = min(k, members.numel())
        # Lists can be uneven (thousands of copies of one picture): blocks stay bounded.
        step = max(1, BLOCK_ELEMENTS // members.numel())
        for start in range(0, pairs.numel(), step):
            # A row probes a list once, so the rows of one list's pairs are distinct.
            queries = pairs[start : start + step] // probes
            block = rows[queries] @ keys_t
            block[queries[:, None] == members[None, :]] = -torch.inf
            top_scores, top_positions = block.topk(found, dim=1)
            merged_scores = torch.cat([scores[queries], top_scores], dim=1)
            merged_indices = torch.cat([indices[queries], members[top_positions]], dim=1)
            best_scores, best = merged_scores.topk(k, dim=1)
            scores[queries], indices[queries] = best_scores, merged_indices.gather(1, best)
    bar.close()
    indices, scores = _order(indices, scores)
    # A row whose probed lists held fewer than k other rows gets the exact answer.
    short = torch.isinf(scores[:, -1]).nonzero().flatten()
    if short.numel():
        exact_indices, exact_scores = top_k(rows[short], rows, k, exclude=short)
        indices[short], scores[short] = exact_indices, exact_scores
    return indices, scores.float()


def _kmeans_centres(rows: Tensor, count: int, seed: int, iterations: int = 10) -> Tensor:
    """``count`` spherical k-means centres of a sample of ``rows`` (64 rows per centre)."""
    generator = torch.Generator().manual_seed(seed)
    sample = rows[torch.randperm(rows.shape[0], generator=generator)[: 64 * count]]
    centres = sample[:count].clone()
    for _ in range(iterations):
        assigned, _ = top_k(sample, centres, 1, ordered=False)
        sums = torch.zeros_like(centres).index_add_(0, assigned[:, 0], sample)
        sizes = torch.bincount(assigned[:, 0], minlength=count)
        empty = sizes == 0
        sums[empty] = sample[torch.randint(len(sample), (int(empty.sum()),), generator=generator)]
        centres = torch.nn.functional.normalize(sums, dim=1)
    return centres
