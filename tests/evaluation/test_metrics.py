"""Top-k accuracy, confusion matrix and per-class accuracy: hand-counted, and as the libraries."""

from __future__ import annotations

import math

import pytest
import sklearn.metrics
import torch
from lightly.utils.benchmarking.topk import mean_topk_accuracy

from contrastive.errors import ContrastiveError
from contrastive.evaluation.fewshot import t_interval
from contrastive.evaluation.metrics import (
    accuracy_interval,
    classification_summary,
    confusion_matrix,
    paired_gain,
    per_class_accuracy,
    topk_accuracy,
)

RANKED = torch.tensor([[0, 1, 2], [1, 0, 2], [2, 1, 0], [0, 2, 1]])
TARGETS = torch.tensor([0, 0, 1, 1])


def test_topk_accuracy_counts_hits_within_the_first_k() -> None:
    # Row hits at ranks: row 0 -> 1, row 1 -> 2, row 2 -> 2, row 3 -> 3.
    assert topk_accuracy(RANKED, TARGETS, (1, 2, 3, 5)) == {1: 0.25, 2: 0.75, 3: 1.0, 5: 1.0}


def test_topk_accuracy_refuses_rankings_that_do_not_match_the_targets() -> None:
    with pytest.raises(ContrastiveError, match=r"one row per target \(3\), got shape \(2, 2\)"):
        topk_accuracy(torch.tensor([[0, 1], [1, 0]]), torch.tensor([0, 1, 1]))
    with pytest.raises(ContrastiveError, match=r"got shape \(4,\)"):
        topk_accuracy(torch.tensor([0, 1, 1, 0]), TARGETS)


def test_confusion_rows_are_true_classes() -> None:
    predicted = RANKED[:, 0]  # [0, 1, 2, 0]
    confusion = confusion_matrix(predicted, TARGETS, 3)
    assert confusion.tolist() == [[1, 1, 0], [1, 0, 1], [0, 0, 0]]
    accuracy = per_class_accuracy(confusion)
    assert accuracy[:2].tolist() == [0.5, 0.0]
    assert math.isnan(accuracy[2])


def test_summary_is_json_ready() -> None:
    summary = classification_summary(RANKED, TARGETS, 3)
    assert summary["top1"] == 0.25 and summary["top5"] == 1.0
    assert summary["per_class_accuracy"] == [0.5, 0.0, None]
    assert summary["confusion_matrix"] == [[1, 1, 0], [1, 0, 1], [0, 0, 0]]


def test_confusion_is_scikit_learns_and_topk_matches_lightly_and_scikit_learn() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(500, 7, generator=generator)  # continuous: no ties to break
    targets = torch.randint(0, 7, (500,), generator=generator)
    ranked = scores.argsort(dim=1, descending=True)
    expected = sklearn.metrics.confusion_matrix(targets, ranked[:, 0], labels=range(7))
    assert confusion_matrix(ranked[:, 0], targets, 7).tolist() == expected.tolist()
    accuracy = topk_accuracy(ranked, targets, (1, 3, 5))
    lightly = mean_topk_accuracy(ranked, targets, (1, 3, 5))
    for k in (1, 3, 5):
        assert accuracy[k] == pytest.approx(lightly[k].item(), abs=1e-7)
        assert accuracy[k] == sklearn.metrics.top_k_accuracy_score(
            targets, scores, k=k, labels=range(7)
        )


def test_empty_test_set_gives_an_empty_confusion() -> None:
    empty = torch.zeros(0, dtype=torch.long)
    assert confusion_matrix(empty, empty, 2).tolist() == [[0, 0], [0, 0]]


@pytest.mark.parametrize("hits, count", [(417, 865), (0, 20), (20, 20), (6, 10), (6500, 10000)])
def test_accuracy_interval_is_scipys_wilson_interval(hits: int, count: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    reference = stats.binomtest(hits, count).proportion_ci(0.95, method="wilson")
    low, high = accuracy_interval(hits / count, count)
    assert low == pytest.approx(reference.low, abs=1e-6)
    assert high == pytest.approx(reference.high, abs=1e-6)


def test_accuracy_interval_checks_its_inputs() -> None:
    # By hand, 50 of 100: centre 0.5, half-width 1.96 * sqrt(0.0025 + 0.0384/400) / 1.0384.
    low, high = accuracy_interval(0.5, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
    with pytest.raises(ContrastiveError, match="at least 1 test image"):
        accuracy_interval(0.5, 0)
    with pytest.raises(ContrastiveError, match=r"must be in \[0, 1\], got 48.5"):
        accuracy_interval(48.5, 865)


def hits_of(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def test_paired_gain_of_one_draw_by_hand() -> None:
    gain = paired_gain(hits_of([[1, 1, 1, 0]]), hits_of([[0, 1, 0, 0]]))
    # Differences 1, 0, 1, 0: mean 0.5, variance 1/3 over 4 images, z = 1.95996.
    half = 1.959964 * (1 / 3 / 4) ** 0.5
    assert gain.mean == pytest.approx(0.5)
    assert (gain.low, gain.high) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-5)


def test_paired_gain_adds_the_spread_over_draws_and_over_images() -> None:
    model = [[1, 1, 1, 0, 1, 0], [1, 1, 0, 0, 1, 1], [0, 1, 1, 1, 1, 1]]
    base = [[0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 1], [0, 0, 1, 0, 1, 1]]
    gain = paired_gain(hits_of(model), hits_of(base))
    difference = torch.tensor(model, dtype=torch.float64) - torch.tensor(base)
    per_draw = difference.mean(dim=1)  # 2/6 in each draw
    variance = per_draw.var() / 3 + difference.mean(dim=0).var() / 6
    assert gain.mean == pytest.approx(1 / 3)
    assert gain.high - gain.mean == pytest.approx(1.959964 * float(variance) ** 0.5, rel=1e-5)


def test_a_gain_shared_by_every_draw_is_told_apart_from_the_overlap_of_intervals() -> None:
    # Draws move both feature sets together (the same labelled images); the model is right
    # on 3 more test images of 60 in each draw. Unpaired intervals overlap, the gain does not.
    base = [[1] * (20 + 10 * draw) + [0] * (40 - 10 * draw) for draw in range(3)]
    model = [row[:] for row in base]
    for row in model:
        for index in [i for i, hit in enumerate(row) if not hit][:3]:
            row[index] = 1
    model_low, _ = t_interval(hits_of(model).float().mean(dim=1).tolist())
    _, base_high = t_interval(hits_of(base).float().mean(dim=1).tolist())
    assert model_low < base_high
    gain = paired_gain(hits_of(model), hits_of(base))
    assert gain.mean == pytest.approx(3 / 60) and gain.low > 0


def test_paired_gain_of_one_draw_takes_flat_hits_and_refuses_other_shapes() -> None:
    flat = paired_gain(torch.tensor([True, True, False]), torch.tensor([False, True, False]))
    assert flat == paired_gain(hits_of([[1, 1, 0]]), hits_of([[0, 1, 0]]))
    with pytest.raises(ContrastiveError, match=r"same draws and images, got \(3,\) and \(4,\)"):
        paired_gain(torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool))
