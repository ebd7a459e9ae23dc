"""Label-free measures against their definitions, on small synthetic embeddings."""

from __future__ import annotations

import math

import pytest
import torch

from contrastive.errors import ContrastiveError
from contrastive.evaluation.label_free import (
    alignment,
    effective_rank,
    nearest_neighbours,
    neighbour_overlap,
    normalized_std,
    uniformity,
)


def rank_r_gaussian(rows: int, dim: int, rank: int, seed: int = 0) -> torch.Tensor:
    """Gaussian data in a random rank-dimensional subspace of R^dim (isotropic inside it)."""
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, rank, generator=generator))
    return torch.randn(rows, rank, generator=generator) @ basis.T


@pytest.mark.parametrize("rank", [1, 4, 16, 48])
def test_rankme_of_rank_r_gaussian_is_close_to_r(rank: int) -> None:
    embeddings = rank_r_gaussian(4096, 64, rank)

    assert effective_rank(embeddings) == pytest.approx(rank, rel=0.05)


def test_rankme_matches_the_formula_and_its_bounds() -> None:
    embeddings = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    singular = torch.linalg.svdvals(embeddings.double())
    p = singular / singular.sum() + 1e-7
    expected = math.exp(-float((p * p.log()).sum()))

    assert effective_rank(embeddings) == pytest.approx(expected, rel=1e-9)
    assert 1 <= effective_rank(embeddings) <= 8
    assert effective_rank(torch.ones(10, 5)) == pytest.approx(1.0, abs=1e-4)
    assert effective_rank(torch.zeros(10, 5)) == 1.0


def test_alignment_and_uniformity_match_a_direct_formula() -> None:
    generator = torch.Generator().manual_seed(2)
    first, second = torch.randn(6, 3, generator=generator), torch.randn(6, 3, generator=generator)
    x = [row / row.norm() for row in first.double()]
    y = [row / row.norm() for row in second.double()]
    expected_alignment = sum(float((a - b).norm() ** 2) for a, b in zip(x, y)) / 6
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    expected_uniformity = math.log(
        sum(math.exp(-2 * float((x[i] - x[j]).norm() ** 2)) for i, j in pairs) / len(pairs)
    )

    assert alignment(first, second) == pytest.approx(expected_alignment, rel=1e-9)
    assert uniformity(first) == pytest.approx(expected_uniformity, rel=1e-9)


def test_alignment_and_uniformity_extremes() -> None:
    same = torch.randn(20, 4)
    collapsed = torch.ones(20, 4)

    assert alignment(same, 3 * same) == pytest.approx(0.0, abs=1e-12)
    assert alignment(same, -same) == pytest.approx(4.0)
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-12)
    assert uniformity(torch.randn(500, 16)) < -3


def test_normalized_std_is_lightlys_and_near_one_over_sqrt_d() -> None:
    spread = torch.randn(4000, 64, generator=torch.Generator().manual_seed(3))

    assert normalized_std(spread) == pytest.approx(1 / 8, rel=0.05)
    assert normalized_std(torch.ones(10, 64)) == pytest.approx(0.0, abs=1e-6)


def test_neighbour_overlap_counts_kept_neighbours() -> None:
    previous = torch.tensor([[1, 2], [0, 2], [0, 1]])
    current = torch.tensor([[2, 1], [2, 3], [4, 5]])

    assert neighbour_overlap(previous, previous) == 1.0
    assert neighbour_overlap(previous, current) == pytest.approx((2 + 1 + 0) / 6)


def test_nearest_neighbours_are_cosine_and_exclude_self() -> None:
    features = torch.tensor([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [1.0, 10.0]])

    neighbours = nearest_neighbours(features, 1)

    assert neighbours.flatten().tolist() == [1, 0, 3, 2]


@pytest.mark.parametrize(
    "call",
    [
        lambda: effective_rank(torch.zeros(5)),
        lambda: uniformity(torch.zeros(1, 4)),
        lambda: alignment(torch.zeros(3, 4), torch.zeros(4, 4)),
        lambda: effective_rank(torch.tensor([[float("nan"), 1.0]])),
        lambda: neighbour_overlap(torch.zeros(3, 2), torch.zeros(3, 3)),
    ],
)
def test_bad_input_gets_one_line_errors(call) -> None:
    with pytest.raises(ContrastiveError) as error:
        call()
    assert "\n" not in str(error.value)
