"""Per-class kNN accuracy with known answers, and the confusion matrix figure."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from contrastive.errors import ContrastiveError
from contrastive.explore import Embeddings, knn_report, plot_confusion, save_figure


def test_leave_one_out_catches_the_mislabelled_point(
    toy: Embeddings, roles: SimpleNamespace
) -> None:
    report = knn_report(toy, k=5)
    # The unlabeled outlier is not scored; the e0 point labelled "b" is voted "a".
    assert roles.outlier not in report.indices and len(report.indices) == 22
    assert report.confusion.tolist() == [[11, 0], [1, 10]]
    np.testing.assert_allclose(report.per_class_accuracy, [1.0, 10 / 11])
    assert report.accuracy == pytest.approx(21 / 22)
    wrong = report.indices[report.predictions != report.targets]
    assert wrong.tolist() == [roles.mislabelled]


def test_train_test_pair_uses_the_train_votes(toy: Embeddings) -> None:
    rng = np.random.default_rng(7)
    eye = np.eye(8, dtype=np.float32)
    queries = np.stack([eye[0]] * 3 + [eye[1]] * 3) + 0.1 * rng.standard_normal((6, 8))
    labels = np.array([0, 0, 0, 1, 1, 0])  # the last one is really a "b"
    test = Embeddings(queries.astype(np.float32), [f"q{i}" for i in range(6)], labels, ["a", "b"])
    report = knn_report(toy, test, k=5)
    assert report.predictions.tolist() == [0, 0, 0, 1, 1, 1]
    assert report.confusion.tolist() == [[3, 1], [0, 2]]
    np.testing.assert_allclose(report.per_class_accuracy, [0.75, 1.0])


def test_a_test_set_lacking_a_class_is_scored_by_class_name(toy: Embeddings) -> None:
    rows = [0, 1, 10, 11]  # two "a" and two "b" images
    only_b = Embeddings(toy.embeddings[rows[2:]], toy.paths[rows[2:]], [0, 0], ["b"])
    report = knn_report(toy, only_b, k=3)
    # Label 0 of the test set is "b", which is class 1 of the training set.
    assert report.targets.tolist() == [1, 1] and report.classes == ["a", "b"]
    assert report.predictions.tolist() == [1, 1]
    assert report.confusion.tolist() == [[0, 0], [0, 2]]


def test_classes_without_images_have_no_accuracy(toy: Embeddings) -> None:
    three = Embeddings(toy.embeddings, toy.paths, toy.labels, ["a", "b", "c"])
    accuracy = knn_report(three, k=3).per_class_accuracy
    assert np.isnan(accuracy[2]) and accuracy[0] == 1.0


def test_bad_inputs_are_refused(toy: Embeddings) -> None:
    unlabeled = Embeddings(toy.embeddings, toy.paths)
    with pytest.raises(ContrastiveError, match="train embeddings have no labelled images"):
        knn_report(unlabeled)
    other = Embeddings(toy.embeddings, toy.paths, toy.labels, ["x", "y"])
    with pytest.raises(ContrastiveError, match="test has 2 class\\(es\\) not in train: x, y"):
        knn_report(toy, other)
    with pytest.raises(ContrastiveError, match="test embeddings have no labelled images"):
        knn_report(toy, unlabeled)
    with pytest.raises(ContrastiveError, match=r"k=23 must be between 1 and 22 \(the labelled"):
        knn_report(toy, toy, k=23)
    # Leave-one-out: one image fewer votes; the message names the Python argument.
    with pytest.raises(ContrastiveError, match=r"^k=22 must be between 1 and 21 \(the labelled"):
        knn_report(toy, k=22)
    one_class = Embeddings(toy.embeddings, toy.paths, np.minimum(toy.labels, 0), ["a", "b"])
    with pytest.raises(ContrastiveError, match="all of one class \\(a\\); kNN accuracy needs"):
        knn_report(one_class, k=3)
    with pytest.raises(ContrastiveError, match="temperature"):
        knn_report(toy, temperature=0)


def test_confusion_figure_labels_rows_with_accuracy(cifar_set: Embeddings, artifacts: Path) -> None:
    report = knn_report(cifar_set, k=10)
    figure = plot_confusion(report)
    save_figure(figure, artifacts / "confusion.png")
    ax = figure.axes[0]
    rows = [label.get_text() for label in ax.get_yticklabels()]
    expected = [
        f"{name} ({acc:.0%})" for name, acc in zip(cifar_set.classes, report.per_class_accuracy)
    ]
    assert rows == expected
    np.testing.assert_allclose(ax.images[0].get_array().sum(axis=1), 1.0)
    assert f"{report.accuracy:.1%}" in ax.get_title()
    counts = plot_confusion(report, normalise=False).axes[0].images[0].get_array()
    np.testing.assert_array_equal(counts, report.confusion)


def test_leave_one_out_votes_like_the_evaluation_knn(toy: Embeddings) -> None:
    import torch

    from contrastive.evaluation.knn import knn_classify

    report = knn_report(toy, k=4, temperature=0.2)
    for row, prediction in zip(report.indices, report.predictions):
        others = np.setdiff1d(report.indices, [row])
        ranking = knn_classify(
            torch.from_numpy(toy.embeddings[others]),
            torch.from_numpy(toy.labels[others]),
            torch.from_numpy(toy.embeddings[[row]]),
            k=4,
            temperature=0.2,
            num_classes=2,
        )
        assert ranking[0, 0].item() == prediction


def test_embeddings_of_two_trainings_or_widths_are_not_scored_silently(toy: Embeddings) -> None:
    def copy(**changes: object) -> Embeddings:
        fields = {"embeddings": toy.embeddings, "paths": toy.paths, "labels": toy.labels}
        fields |= {"classes": toy.classes, **changes}
        return Embeddings(**fields)

    # Before: a bank of one run and queries of another scored at chance, without a word.
    with pytest.warns(UserWarning, match=r"different checkpoints \(runs/a and runs/b\)"):
        knn_report(copy(source="runs/a"), copy(source="runs/b"), k=3)
    with pytest.raises(ContrastiveError, match="embedding widths differ: train has 8-d"):
        knn_report(toy, copy(embeddings=toy.embeddings[:, :4]), k=3)
