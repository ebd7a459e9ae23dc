"""Linear probe: a closed-form optimum, agreement with scikit-learn, splits, selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from contrastive.errors import ContrastiveError
from contrastive.evaluation.linear import (
    fit_logistic_regression,
    linear_probe,
    standardization,
    stratified_split,
)


def clustered(
    count: int, seed: int, num_classes: int = 5, dim: int = 32, spread: float = 0.35
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centers = spread * torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, num_classes, (count,), generator=generator)
    features = torch.relu(centers[labels] + torch.randn(count, dim, generator=generator))
    return features, labels


def test_two_point_problem_reaches_its_closed_form_optimum() -> None:
    # x = -1 (class 0) and +1 (class 1). By symmetry the biases are equal and W = (-d/2, d/2),
    # so the objective is log(1 + e^-d) + wd d^2 / 4, stationary where wd = 2 / (d (1 + e^d)).
    # For wd = 1 / (1 + e^2) the optimum is d = 2.
    features = torch.tensor([[-1.0], [-1.0], [1.0], [1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    weight, bias = fit_logistic_regression(features, labels, 2, 1 / (1 + math.e**2))
    assert weight[:, 0].tolist() == pytest.approx([-1.0, 1.0], abs=1e-4)
    assert bias[0].item() == pytest.approx(bias[1].item(), abs=1e-5)


def test_standardization_uses_population_std_and_guards_constants() -> None:
    mean, std = standardization(torch.tensor([[0.0, 5.0], [2.0, 5.0]]))
    assert mean.tolist() == [1.0, 5.0]
    assert std.tolist() == [1.0, 1.0]  # std 1 for column 0; constant column 1 gets 1


@pytest.mark.parametrize("weight_decay", [1e-4, 1e-2])
def test_agrees_with_scikit_learn_on_the_same_objective(weight_decay: float) -> None:
    train, train_labels = clustered(2000, seed=1)
    test, test_labels = clustered(1000, seed=2)
    ours = linear_probe(train, train_labels, test, test_labels, weight_decays=[weight_decay])
    mean, std = train.mean(0), train.std(0, correction=0)
    # sklearn minimises C * sum(CE) + |W|^2 / 2, i.e. ours with wd = 1 / (C N).
    reference = LogisticRegression(C=1 / (weight_decay * len(train)), max_iter=2000, tol=1e-8)
    reference.fit(((train - mean) / std).numpy(), train_labels.numpy())
    reference_top1 = reference.predict(((test - mean) / std).numpy()) == test_labels.numpy()
    assert abs(ours.summary["top1"] - reference_top1.mean()) <= 0.01
    assert np.allclose(ours.classifier.weight.numpy(), reference.coef_, atol=0.01)


def test_selected_weight_decay_agrees_with_scikit_learn_within_a_point() -> None:
    train, train_labels = clustered(2000, seed=3)
    test, test_labels = clustered(1000, seed=4)
    ours = linear_probe(train, train_labels, test, test_labels)
    assert set(ours.validation_accuracy) == {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1}
    mean, std = train.mean(0), train.std(0, correction=0)
    reference = LogisticRegression(C=1 / (ours.weight_decay * len(train)), max_iter=2000)
    reference.fit(((train - mean) / std).numpy(), train_labels.numpy())
    reference_top1 = reference.predict(((test - mean) / std).numpy()) == test_labels.numpy()
    assert abs(ours.summary["top1"] - reference_top1.mean()) <= 0.01


def test_summary_holds_per_class_accuracy_and_confusion() -> None:
    train, train_labels = clustered(500, seed=5, num_classes=3, spread=3.0)
    test, test_labels = clustered(200, seed=6, num_classes=3, spread=3.0)
    result = linear_probe(train, train_labels, test, test_labels, weight_decays=[1e-3])
    confusion = np.array(result.summary["confusion_matrix"])
    assert confusion.shape == (3, 3) and confusion.sum() == 200
    assert np.trace(confusion) / 200 == pytest.approx(result.summary["top1"])
    counts = np.bincount(test_labels.numpy(), minlength=3)
    assert result.summary["per_class_accuracy"] == pytest.approx(list(np.diag(confusion) / counts))
    assert result.summary["top5"] == 1.0  # only 3 classes
    # One line in a notebook, not the classifier's tensors and the confusion matrix.
    top1 = 100 * result.summary["top1"]
    assert repr(result) == f"LinearProbeResult(top1 {top1:.2f}, top5 100.00, weight_decay=0.001)"


def test_stratified_split_holds_out_a_share_of_each_class() -> None:
    labels = torch.tensor([0] * 20 + [1] * 10 + [2] * 1)
    fit, validation = stratified_split(labels, 0.1, seed=0)
    assert sorted(torch.cat([fit, validation]).tolist()) == list(range(31))
    assert torch.bincount(labels[validation], minlength=3).tolist() == [2, 1, 0]


def test_selection_rejects_a_penalty_that_flattens_the_classifier() -> None:
    train, train_labels = clustered(600, seed=7, num_classes=3, spread=3.0)
    test, test_labels = clustered(100, seed=8, num_classes=3, spread=3.0)
    result = linear_probe(train, train_labels, test, test_labels, weight_decays=[1e-4, 1e3])
    assert result.weight_decay == 1e-4
    majority = torch.bincount(train_labels).max().item() / len(train_labels)
    assert result.validation_accuracy[1e3] < majority + 0.1 < result.validation_accuracy[1e-4]


@pytest.mark.parametrize(
    ("test_features", "test_labels", "grid", "message"),
    [
        (torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), [1e-3], "differ in width"),
        (torch.zeros(4, 2), torch.tensor([0, -1, 0, 0]), [1e-3], "-1 marks unlabeled"),
        (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), [], r"^weight decays must be >= 0"),
        (
            torch.full((4, 2), float("nan")),
            torch.zeros(4, dtype=torch.long),
            [1e-3],
            r"linear-probe test features contain NaN or inf in 4 row\(s\)",
        ),
    ],
)
def test_bad_input_raises_one_line_errors(
    test_features: torch.Tensor, test_labels: torch.Tensor, grid: list[float], message: str
) -> None:
    with pytest.raises(ContrastiveError, match=message):
        linear_probe(
            torch.zeros(4, 2),
            torch.tensor([0, 1, 0, 1]),
            test_features,
            test_labels,
            weight_decays=grid,
        )


def test_numpy_arrays_are_accepted() -> None:
    train, train_labels = clustered(60, seed=0, dim=8)
    test, test_labels = clustered(20, seed=1, dim=8)
    expected = linear_probe(train, train_labels, test, test_labels, weight_decays=[1e-2])
    result = linear_probe(
        train.numpy(), train_labels.numpy(), test.numpy(), test_labels.numpy(), weight_decays=[1e-2]
    )
    assert result.summary == expected.summary


def test_a_validation_split_that_ties_every_weight_decay_says_so(caplog) -> None:
    import logging

    # Features that carry nothing: every penalty predicts the same, so the validation split
    # ties them all, and "widen the grid" would be the wrong advice.
    features = torch.ones(10, 4)
    labels = torch.arange(5).repeat(2)
    with caplog.at_level(logging.WARNING):
        result = linear_probe(features, labels, features, labels, weight_decays=[1e-3, 1e-1, 10])
    assert len(set(result.validation_accuracy.values())) == 1
    assert "the 5 validation image(s) cannot tell the weight decays apart" in caplog.text
    assert "widening" not in caplog.text and result.weight_decay == 10


def test_an_edge_weight_decay_on_few_validation_images_is_not_sent_to_a_wider_grid(
    caplog,
) -> None:
    import logging

    from contrastive.cli.evaluate import _messages_named

    # 60 images (6 validation images) of the clusters a strong penalty flattens.
    features, labels = clustered(60, seed=7, num_classes=3, spread=3.0)
    with caplog.at_level(logging.WARNING), _messages_named("random_init"):
        result = linear_probe(features, labels, features, labels, weight_decays=[1e-4, 1e3])
    assert result.weight_decay == 1e-4
    (message,) = [record.getMessage() for record in caplog.records]
    # The feature set is named (eval prints three sets' warnings one after another).
    assert message.startswith(f"random init: the chosen weight decay {result.weight_decay:g}")
    assert "chosen on 6 validation image(s)" in message and "wider one" not in message
    assert "so few images choose by chance as much as by need" in message
