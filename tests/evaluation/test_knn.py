"""Weighted kNN: hand-computed votes, Lightly's knn_predict, brute-force L2, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict

from contrastive.errors import ContrastiveError
from contrastive.evaluation.knn import knn_classify, knn_rankings

# Four training vectors on the unit circle: 0 deg (class 0), 90 deg and 45 deg (class 1),
# 180 deg (class 2). The query sits at 0 deg, so its cosine similarities are 1, 0, 0.7071, -1.
BANK = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
BANK_LABELS = torch.tensor([0, 1, 1, 2])
QUERY = torch.tensor([[3.0, 0.0]])  # not unit length: cosine must normalise it


def clustered(num_classes: int, count: int, dim: int, seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=generator)
    labels = torch.randint(0, num_classes, (count,), generator=generator)
    return centers[labels] + 1.5 * torch.randn(count, dim, generator=generator), labels


def test_votes_match_hand_computation() -> None:
    # T = 1. k=1,2: class 0 leads with e^1. k=3: class 1 gets e^0.7071 + e^0 = 3.028 > e^1 =
    # 2.718, so the ranking flips to [1, 0, 2]. k=4 adds e^-1 for class 2: still [1, 0, 2].
    assert math.exp(math.cos(math.pi / 4)) + 1 > math.e
    rankings = knn_rankings(BANK, BANK_LABELS, QUERY, ks=(1, 2, 3, 4), temperature=1.0)
    assert rankings[1][0, 0] == 0
    assert rankings[2][0, 0] == 0
    assert rankings[3][0].tolist() == [1, 0, 2]
    assert rankings[4][0].tolist() == [1, 0, 2]


def test_low_temperature_lets_the_nearest_neighbour_win() -> None:
    # T = 0.1: e^10 for class 0 outweighs e^7.07 + e^0 for class 1.
    ranking = knn_classify(BANK, BANK_LABELS, QUERY, k=3, temperature=0.1)
    assert ranking[0].tolist() == [0, 1, 2]


@pytest.mark.parametrize(("num_classes", "dim"), [(10, 64), (100, 32), (3, 8)])
def test_identical_to_lightly_knn_predict(num_classes: int, dim: int) -> None:
    train, train_labels = clustered(num_classes, 1500, dim, seed=num_classes)
    test, _ = clustered(num_classes, 300, dim, seed=num_classes + 1)
    ours = knn_rankings(
        train, train_labels, test, ks=(1, 20, 200), num_classes=num_classes, chunk_size=64
    )
    for k in (1, 20, 200):
        reference = knn_predict(
            F.normalize(test, dim=1),
            F.normalize(train, dim=1).T,
            train_labels,
            num_classes,
            knn_k=k,
            knn_t=0.1,
        )
        assert torch.equal(ours[k], reference), f"k={k}"


def test_chunking_and_single_k_do_not_change_answers() -> None:
    train, train_labels = clustered(5, 400, 16, seed=3)
    test, _ = clustered(5, 101, 16, seed=4)
    together = knn_rankings(train, train_labels, test, ks=(5, 50), chunk_size=10)
    assert torch.equal(together[5], knn_classify(train, train_labels, test, k=5))
    assert torch.equal(together[50], knn_classify(train, train_labels, test, k=50))


def test_euclidean_one_nn_matches_brute_force() -> None:
    train, train_labels = clustered(4, 300, 12, seed=5)
    test, _ = clustered(4, 80, 12, seed=6)
    nearest = torch.cdist(test.double(), train.double()).argmin(dim=1)
    ranking = knn_classify(train * 20, train_labels, test * 20, k=1, metric="euclidean")
    assert torch.equal(ranking[:, 0], train_labels[nearest])


def test_euclidean_weights_follow_distance_differences() -> None:
    # Query at 0; neighbours at distance 1 (class 0) and 1.05, 1.1 (class 1). With T = 0.1
    # class 1 scores e^-0.5 + e^-1 = 0.974 < e^0 = 1 for class 0; with T = 1 it scores
    # e^-0.05 + e^-0.1 = 1.856 > 1.
    bank = torch.tensor([[1.0], [-1.05], [1.1]])
    labels = torch.tensor([0, 1, 1])
    query = torch.zeros(1, 1)
    assert knn_classify(bank, labels, query, k=3, temperature=0.1, metric="euclidean")[0, 0] == 0
    assert knn_classify(bank, labels, query, k=3, temperature=1.0, metric="euclidean")[0, 0] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"test_features": torch.zeros(2, 3), "ks": (1,)}, "differ in width"),
        # Worded as the parameters, not the CLI's flags: a Python caller gave no --k.
        ({"ks": (5,)}, r"^k values must lie in \[1, 4\]"),
        ({"ks": (0,)}, r"^k values"),
        ({"temperature": 0.0, "ks": (1,)}, r"^temperature must be finite and > 0"),
        ({"metric": "manhattan", "ks": (1,)}, "unknown kNN metric"),
        ({"train_labels": torch.tensor([0, -1, 1, 2]), "ks": (1,)}, "-1 marks unlabeled"),
        (
            {"test_features": torch.full((2, 2), float("nan")), "ks": (1,)},
            r"kNN test features contain NaN or inf in 2 row\(s\), first row 0",
        ),
        (
            {
                "train_features": BANK.clone().index_fill_(0, torch.tensor([2]), torch.inf),
                "ks": (1,),
            },
            r"kNN train features contain NaN or inf in 1 row\(s\), first row 2",
        ),
        ({"test_features": torch.zeros(2), "ks": (1,)}, r"must be 2-D \(rows x features\)"),
        ({"num_classes": 2, "ks": (1,)}, r"labels up to 2 need num_classes >= 3, got 2"),
        (
            {"test_features": BANK, "exclude": torch.tensor([0, 1, 2, 9]), "ks": (1,)},
            r"exclude index 9 is outside 0\.\.3",
        ),
    ],
)
def test_bad_input_raises_one_line_errors(kwargs: dict, message: str) -> None:
    arguments = {"train_features": BANK, "train_labels": BANK_LABELS, "test_features": QUERY}
    arguments.update(kwargs)
    with pytest.raises(ContrastiveError, match=message) as error:
        knn_rankings(**arguments)
    assert "\n" not in str(error.value)


def test_numpy_arrays_are_accepted() -> None:
    # Embeddings hold NumPy arrays; the protocols should not ask for a conversion first.
    expected = knn_rankings(BANK, BANK_LABELS, QUERY, (2,))[2]
    ranked = knn_rankings(BANK.numpy(), BANK_LABELS.numpy(), QUERY.numpy(), (2,))[2]
    assert torch.equal(ranked, expected)
    assert torch.equal(knn_classify(BANK.numpy(), BANK_LABELS.numpy(), QUERY.numpy(), 2), expected)
