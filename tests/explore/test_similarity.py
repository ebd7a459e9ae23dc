"""Chunked cosine search: neighbours, near duplicates, outliers."""

from __future__ import annotations

import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from contrastive.errors import ContrastiveError
from contrastive.explore import (
    Embeddings,
    near_duplicates,
    nearest_neighbours,
    outliers,
    similarity,
    top_k_similar,
)


def test_top_k_orders_by_cosine_not_length() -> None:
    keys = np.array([[10.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    indices, sims = top_k_similar(np.array([[1.0, 0.1]]), keys, k=3)
    assert indices.tolist() == [[0, 2, 1]]
    expected = [1 / np.sqrt(1.01), 1.1 / np.sqrt(2.02), 0.1 / np.sqrt(1.01)]
    np.testing.assert_allclose(sims[0], expected, rtol=1e-6)


def test_top_k_checks_k_and_dimensions() -> None:
    keys = np.eye(3)
    with pytest.raises(ContrastiveError, match="k must be between 1 and 2"):
        top_k_similar(keys[:1], keys, k=3, exclude=[0])
    with pytest.raises(ContrastiveError, match="dimensions"):
        top_k_similar(np.ones((1, 2)), keys, k=1)


def test_nearest_neighbour_of_a_copy_is_the_original(
    toy: Embeddings, roles: SimpleNamespace
) -> None:
    copy = roles.duplicate_of_0
    indices, sims = nearest_neighbours(toy.embeddings, k=1, query_indices=[0, copy])
    assert indices[:, 0].tolist() == [copy, 0]
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-6)


def test_neighbours_stay_in_their_cluster_and_exclude_self(
    toy: Embeddings, roles: SimpleNamespace
) -> None:
    indices, _ = nearest_neighbours(toy.embeddings, k=5, query_indices=roles.cluster_b)
    assert set(indices.ravel()) <= set(roles.cluster_b)
    assert all(query not in row for query, row in zip(roles.cluster_b, indices))


def test_chunking_does_not_change_neighbours(toy: Embeddings, roles: SimpleNamespace) -> None:
    whole = nearest_neighbours(toy.embeddings, k=4)
    chunked = nearest_neighbours(toy.embeddings, k=4, chunk_rows=3)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_allclose(whole[1], chunked[1])


def test_near_duplicates_finds_exactly_the_copy(toy: Embeddings, roles: SimpleNamespace) -> None:
    pairs, sims = near_duplicates(toy.embeddings, threshold=0.999)
    assert pairs.tolist() == [[0, roles.duplicate_of_0]]
    np.testing.assert_allclose(sims, [1.0], atol=1e-6)


def _brute_force_pairs(embeddings: np.ndarray, threshold: float) -> dict[tuple, float]:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    full = unit @ unit.T
    rows, cols = np.nonzero(np.triu(full >= threshold, k=1))
    return {(int(i), int(j)): float(full[i, j]) for i, j in zip(rows, cols)}


def test_near_duplicates_matches_brute_force_with_small_chunks() -> None:
    embeddings = np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32)
    expected = _brute_force_pairs(embeddings, 0.8)
    pairs, sims = near_duplicates(embeddings, threshold=0.8, chunk_rows=7)
    assert len(expected) > 20
    assert {tuple(p) for p in pairs.tolist()} == set(expected)
    assert np.all(np.diff(sims) <= 0)
    assert np.all(pairs[:, 0] < pairs[:, 1])


def test_near_duplicates_keeps_the_most_similar_when_capped() -> None:
    embeddings = np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32)
    expected = sorted(_brute_force_pairs(embeddings, 0.5).values(), reverse=True)[:10]
    with pytest.warns(UserWarning, match="kept the 10 most similar"):
        pairs, sims = near_duplicates(embeddings, threshold=0.5, max_pairs=10, chunk_rows=5)
    assert len(pairs) == 10
    np.testing.assert_allclose(sims, expected, rtol=1e-5)


def test_near_duplicates_never_holds_the_full_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    count = 6000  # the full float32 matrix would be 144 MB
    embeddings = np.random.default_rng(0).standard_normal((count, 8)).astype(np.float32)
    monkeypatch.setattr(similarity, "BLOCK_ELEMENTS", 100 * count)
    tracemalloc.start()
    try:
        near_duplicates(embeddings, threshold=0.99)
        nearest_neighbours(embeddings, k=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_default_chunks_fit_the_block_budget_for_50k() -> None:
    assert similarity.rows_per_chunk(50_000) * 50_000 <= similarity.BLOCK_ELEMENTS
    assert similarity.rows_per_chunk(10**9) == 1


def test_outlier_is_the_lonely_point(toy: Embeddings, roles: SimpleNamespace) -> None:
    indices, scores = outliers(toy.embeddings, k=3, count=3)
    assert indices[0] == roles.outlier
    assert scores[0] < 0.5 < scores[1]
    assert np.all(np.diff(scores) >= 0)


def test_bad_arguments_are_named() -> None:
    embeddings = np.eye(4)
    with pytest.raises(ContrastiveError, match="threshold"):
        near_duplicates(embeddings, threshold=1.5)
    with pytest.raises(
        ContrastiveError, match=r"query_indices holds index 9, outside the rows 0\.\.3"
    ):
        nearest_neighbours(embeddings, k=1, query_indices=[9])
    with pytest.raises(ContrastiveError, match="count"):
        outliers(embeddings, k=1, count=0)


def test_indices_accept_masks_and_refuse_what_is_not_a_row() -> None:
    embeddings = np.eye(4) + 0.1
    mask = np.array([False, True, False, True])
    indices, _ = nearest_neighbours(embeddings, k=1, query_indices=mask)
    # The mask's rows are queried, not rows 0 and 1 (what a mask read as numbers gives).
    np.testing.assert_array_equal(
        indices, nearest_neighbours(embeddings, k=1, query_indices=[1, 3])[0]
    )
    with pytest.raises(ContrastiveError, match="boolean mask of 3 entries, expected one per row"):
        nearest_neighbours(embeddings, k=1, query_indices=mask[:3])
    with pytest.raises(ContrastiveError, match="index -1, outside"):
        nearest_neighbours(embeddings, k=1, query_indices=[-1])
    with pytest.raises(ContrastiveError, match="must be integer row numbers.*2.7"):
        nearest_neighbours(embeddings, k=1, query_indices=[2.7])
    assert similarity.check_indices(np.array([2, 0]), 3).tolist() == [2, 0]


def test_top_k_checks_exclude() -> None:
    keys = np.eye(3)
    with pytest.raises(ContrastiveError, match="exclude holds index 99"):
        top_k_similar(keys[:1], keys, k=1, exclude=[99])
    with pytest.raises(ContrastiveError, match=r"one key index per query \(2\), got 1"):
        top_k_similar(keys[:2], keys, k=1, exclude=[0])
    with pytest.raises(ContrastiveError, match="exclude must be integer row numbers, got bool"):
        top_k_similar(keys[:1], keys, k=1, exclude=[True])


@pytest.mark.parametrize("normalise", [True, False])
def test_plain_arrays_get_the_embeddings_checks(normalise: bool) -> None:
    keys = np.eye(3)
    with pytest.raises(ContrastiveError, match=r"queries must be 2-D \(rows x features\)"):
        top_k_similar(keys[0], keys, k=1, normalise=normalise)
    bad = keys.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ContrastiveError, match="keys contain NaN or inf in 1 row"):
        top_k_similar(keys, bad, k=1, normalise=normalise)


def test_unit_rows_refuses_what_embeddings_refuse() -> None:
    bad = np.eye(3)
    bad[2, 0] = np.inf
    with pytest.raises(
        ContrastiveError, match="embeddings contain NaN or inf in 1 row.*first row 2"
    ):
        similarity.unit_rows(bad)
    with pytest.raises(
        ContrastiveError, match=r"must be 2-D \(rows x features\), got shape \(3,\)"
    ):
        nearest_neighbours(np.ones(3), k=1)
