"""The one neighbour search: exact answers, ties by index whatever the chunking or threads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contrastive.errors import ContrastiveError
from contrastive.neighbours import _settle_ties, check_rows, top_k, top_k_within


def reference_top_k(
    queries: torch.Tensor, keys: torch.Tensor, k: int, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 scores of every pair, sorted by (score descending, index ascending)."""
    scores = queries.double() @ keys.double().T
    if bias is not None:
        scores += bias.double()
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
    return order, scores.gather(1, order)


def keys_with_copies(seed: int = 0) -> torch.Tensor:
    """60 unit keys where 10 and 35 copy key 3, and 50 copies key 20, bit for bit."""
    generator = torch.Generator().manual_seed(seed)
    keys = F.normalize(torch.randn(60, 16, generator=generator), dim=1)
    keys[10] = keys[3]
    keys[35] = keys[3]
    keys[50] = keys[20]
    return keys


def test_matches_a_float64_reference_on_untied_data() -> None:
    generator = torch.Generator().manual_seed(1)
    queries, keys = (
        torch.randn(37, 24, generator=generator),
        torch.randn(500, 24, generator=generator),
    )
    indices, scores = top_k(queries, keys, k=9)
    expected_indices, expected_scores = reference_top_k(queries, keys, 9)
    assert torch.equal(indices, expected_indices)
    torch.testing.assert_close(scores.double(), expected_scores, rtol=1e-5, atol=1e-5)
    assert scores.dtype == torch.float32 and indices.dtype == torch.long


def test_identical_keys_come_in_index_order() -> None:
    keys = keys_with_copies()
    indices, scores = top_k(keys[[3, 20]], keys, k=4)
    assert indices[0, :3].tolist() == [3, 10, 35]
    assert indices[1, :2].tolist() == [20, 50]
    assert scores[0, 0] == scores[0, 1] == scores[0, 2]


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 7, 60])
@pytest.mark.parametrize("threads", [1, 2])
def test_chunking_and_threads_give_the_same_answer(chunk_rows: int, threads: int) -> None:
    keys = keys_with_copies()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        indices, scores = top_k(keys, keys, k=5, exclude=torch.arange(60), chunk_rows=chunk_rows)
    finally:
        torch.set_num_threads(before)
    expected, expected_scores = reference_top_k(keys, keys, 6)
    # Without the query itself, in the reference's (score, index) order.
    for row in range(60):
        kept = [int(i) for i in expected[row] if int(i) != row][:5]
        assert indices[row].tolist() == kept, f"row {row}"
    assert indices[3, :2].tolist() == [10, 35] and indices[10, :2].tolist() == [3, 35]
    assert indices[50, 0] == 20 and indices[20, 0] == 50
    assert not (indices == torch.arange(60)[:, None]).any()
    assert torch.isfinite(scores).all() and expected_scores.shape == (60, 6)


def test_a_tie_wider_than_the_candidates_still_takes_the_lowest_indices() -> None:
    # 30 copies of one key, more than k plus the spare candidates: the k lowest win.
    base = F.normalize(torch.randn(1, 8, generator=torch.Generator().manual_seed(2)), dim=1)
    others = F.normalize(torch.randn(20, 8, generator=torch.Generator().manual_seed(3)), dim=1)
    keys = torch.cat([others[:10], base.expand(30, -1), others[10:]])
    order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(4))
    shuffled = keys[order]
    copies = sorted(int(i) for i in torch.nonzero(order.ge(10) & order.lt(40)).flatten())
    indices, _ = top_k(base, shuffled, k=5, chunk_rows=1)
    assert indices[0].tolist() == copies[:5]


def test_key_bias_gives_euclidean_neighbours() -> None:
    generator = torch.Generator().manual_seed(5)
    queries, keys = torch.randn(11, 6, generator=generator), torch.randn(90, 6, generator=generator)
    indices, _ = top_k(2 * queries, keys, k=4, key_bias=-(keys * keys).sum(dim=1))
    expected = torch.cdist(queries.double(), keys.double()).argsort(dim=1, stable=True)[:, :4]
    assert torch.equal(indices, expected)


def test_bad_k_and_widths_are_one_line_errors() -> None:
    keys = torch.eye(3)
    with pytest.raises(ContrastiveError, match="k must be between 1 and 2"):
        top_k(keys[:1], keys, k=3, exclude=torch.tensor([0]))
    with pytest.raises(ContrastiveError, match="k must be between 1 and 3"):
        top_k(keys[:1], keys, k=0)
    with pytest.raises(ContrastiveError, match="same number of dimensions"):
        top_k(torch.ones(1, 2), keys, k=1)


def test_scores_a_last_bit_apart_are_rescored_and_ordered_by_index() -> None:
    # What a BLAS may hand over for identical keys: the same score, a rounding apart.
    keys = keys_with_copies()
    query = keys[3:4]
    candidates = torch.tensor([[35, 10, 3, 7]])
    exact = (query.double() @ keys[candidates[0]].double().T).float()
    jittered = exact + torch.tensor([[3e-7, 2e-7, 0.0, 0.0]])
    indices, scores = _settle_ties(query, keys, None, None, slice(0, 1), candidates, jittered, 3)
    assert indices[0, :3].tolist() == [3, 10, 35]
    assert scores[0, 0] == scores[0, 1] == scores[0, 2]


@pytest.mark.parametrize("chunk_rows", [1, 7, 60])
def test_unordered_search_keeps_the_same_members(chunk_rows: int) -> None:
    keys = keys_with_copies()
    for k in (1, 2, 3, 5):
        ordered, _ = top_k(keys, keys, k, exclude=torch.arange(60))
        members, _ = top_k(
            keys, keys, k, exclude=torch.arange(60), chunk_rows=chunk_rows, ordered=False
        )
        assert torch.equal(members.sort(dim=1).values, ordered.sort(dim=1).values), k


def test_only_the_tie_run_across_the_kth_place_is_rescored() -> None:
    from contrastive.neighbours import _run_across

    # Gaps after places 0..5; the run 2-3-4 spans the gap after place 3 (k = 4).
    close = torch.tensor([[True, False, True, True, True, False]])
    assert _run_across(close, 4).tolist() == [[False, False, True, True, True, False]]
    assert not _run_across(close, 2).any()  # gap after place 1 is clear
    assert not _run_across(close[:, :3], 4).any()  # no candidate past the 4th


def test_nan_or_inf_rows_are_refused_not_ranked() -> None:
    # A NaN score compares false with everything: topk would rank the row anywhere (first).
    keys = torch.eye(4)
    keys[2, 1] = float("nan")
    with pytest.raises(
        ContrastiveError, match=r"keys contain NaN or inf in 1 row\(s\), first row 2"
    ):
        top_k(torch.eye(4), keys, k=1)
    queries = torch.eye(4)
    queries[[1, 3], 0] = torch.inf
    with pytest.raises(
        ContrastiveError, match=r"queries contain NaN or inf in 2 row\(s\), first row 1"
    ):
        top_k(queries, torch.eye(4), k=1)


def test_check_rows_names_the_argument_and_its_shape() -> None:
    with pytest.raises(
        ContrastiveError, match=r"^embeddings must be 2-D \(rows x features\), got shape \(3,\)$"
    ):
        check_rows(torch.ones(3), "embeddings")
    check_rows(torch.ones(3, 2), "embeddings")  # finite and 2-D: no error


def test_exclude_must_be_one_key_index_per_query() -> None:
    keys = torch.eye(3)
    with pytest.raises(ContrastiveError, match=r"exclude index 99 is outside 0\.\.2"):
        top_k(keys[:1], keys, k=1, exclude=torch.tensor([99]))
    with pytest.raises(ContrastiveError, match=r"exclude index -1 is outside 0\.\.2"):
        top_k(keys[:1], keys, k=1, exclude=torch.tensor([-1]))
    with pytest.raises(ContrastiveError, match=r"one key index per query \(2\)"):
        top_k(keys[:2], keys, k=1, exclude=torch.tensor([0]))


def test_a_large_search_shows_its_progress_and_gives_the_same_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import contrastive.neighbours as neighbours

    keys = keys_with_copies()
    quiet = top_k(keys, keys, 5, chunk_rows=7, progress="near-copy search")
    assert "near-copy search" not in capsys.readouterr().err  # small: no bar
    monkeypatch.setattr(neighbours, "PROGRESS_SCORES", 0)
    shown = top_k(keys, keys, 5, chunk_rows=7, progress="near-copy search")
    bar = capsys.readouterr().err
    assert "near-copy search" in bar and "60/60" in bar
    assert all(torch.equal(a, b) for a, b in zip(quiet, shown))
    top_k(keys, keys, 5, chunk_rows=7)
    assert capsys.readouterr().err == ""  # no label: never a bar


def clustered_rows(count: int, seed: int = 0) -> torch.Tensor:
    """Unit rows around 20 centres, rows 100..149 near copies of rows 300..349."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(20, 32, generator=generator)
    labels = torch.randint(0, 20, (count,), generator=generator)
    rows = centres[labels] + 0.7 * torch.randn(count, 32, generator=generator)
    rows[100:150] = rows[300:350] + 0.01 * torch.randn(50, 32, generator=generator)
    return F.normalize(rows, dim=1)


def test_within_a_set_is_exact_up_to_the_approximate_size() -> None:
    rows = clustered_rows(400)
    exact = top_k(rows, rows, 5, exclude=torch.arange(400))
    within = top_k_within(rows, 5)
    assert all(torch.equal(a, b) for a, b in zip(exact, within))


def test_large_sets_are_searched_approximately_and_find_close_pairs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import contrastive.neighbours as neighbours

    rows = clustered_rows(3000)
    exact_indices, exact_scores = top_k(rows, rows, 10, exclude=torch.arange(3000))
    monkeypatch.setattr(neighbours, "APPROXIMATE_ROWS", 1000)
    monkeypatch.setattr(neighbours, "PROBED_LISTS", 8)  # of 54 lists: a real approximation
    with caplog.at_level(logging.INFO):
        indices, scores = top_k_within(rows, 10)
    assert "approximate neighbour search" in caplog.text and "8 of 54" in caplog.text
    assert indices.shape == scores.shape == (3000, 10) and scores.dtype == torch.float32
    assert not (indices == torch.arange(3000)[:, None]).any() and (indices >= 0).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    # Every score is the true similarity of the pair it names.
    torch.testing.assert_close(scores, (rows[:, None] * rows[indices]).sum(-1))
    # Near copies are each other's nearest; most neighbours are the exact ones.
    assert indices[100:150, 0].tolist() == list(range(300, 350))
    recall = (
        sum(len(set(a) & set(b)) for a, b in zip(indices.tolist(), exact_indices.tolist()))
        / exact_indices.numel()
    )
    assert 0.8 < recall <= 1.0
    assert (scores <= exact_scores + 1e-6).all()  # never better than the best there is
    # Asked for, the search is exact at any size.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        forced_indices, forced_scores = top_k_within(rows, 10, exact=True)
    assert "approximate" not in caplog.text
    assert torch.equal(forced_indices, exact_indices)
    torch.testing.assert_close(forced_scores, exact_scores)


def test_rows_whose_lists_are_too_small_get_the_exact_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import contrastive.neighbours as neighbours

    # 300 copies of one row and 60 others: one list takes the copies, the rest hold few.
    generator = torch.Generator().manual_seed(1)
    rows = F.normalize(torch.randn(360, 8, generator=generator), dim=1)
    rows[:300] = rows[0]
    monkeypatch.setattr(neighbours, "APPROXIMATE_ROWS", 10)
    monkeypatch.setattr(neighbours, "PROBED_LISTS", 1)
    indices, scores = top_k_within(rows, 5)
    exact_indices, exact_scores = top_k(rows, rows, 5, exclude=torch.arange(360))
    assert (indices >= 0).all() and torch.isfinite(scores).all()
    torch.testing.assert_close(scores[:300], exact_scores[:300])  # copies find copies
