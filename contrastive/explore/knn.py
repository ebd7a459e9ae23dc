"""Per-class kNN accuracy of embeddings, and the confusion matrix as a figure.

Votes are weighted by ``exp(cosine similarity / T)`` as in
:mod:`contrastive.evaluation.knn`, which scores train/test pairs here too, so the numbers
match ``contrastive eval``. Leave-one-out scoring of a single set uses the same vote with
each image excluded from its own neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from contrastive.embeddings import Embeddings
from contrastive.errors import ContrastiveError
from contrastive.evaluation.knn import knn_classify
from contrastive.evaluation.labels import align_test_labels, check_comparable
from contrastive.evaluation.metrics import confusion_matrix, per_class_accuracy

# Cells are annotated with their value only while the text still fits.
_MAX_ANNOTATED_CLASSES = 20


@dataclass
class KnnReport:
    """kNN classification of the labelled images of a set.

    Attributes:
        classes: ``C`` class names.
        indices: ``(M,)`` rows of the evaluated set that were classified (the labelled ones).
        targets: ``(M,)`` true labels.
        predictions: ``(M,)`` predicted labels.
        confusion: ``(C, C)`` int64 counts, row = true class, column = predicted class.
        k: Neighbours used.
    """

    classes: list[str]
    indices: np.ndarray
    targets: np.ndarray
    predictions: np.ndarray
    confusion: np.ndarray
    k: int

    @property
    def accuracy(self) -> float:
        """Fraction of classified images whose prediction is right."""
        return float(np.mean(self.predictions == self.targets))

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """``(C,)`` accuracy of each class; NaN for classes without images."""
        return per_class_accuracy(torch.from_numpy(self.confusion)).numpy()


def knn_report(
    train: Embeddings, test: Embeddings | None = None, k: int = 20, temperature: float = 0.1
) -> KnnReport:
    """Classifies each labelled image by a weighted vote of its ``k`` nearest neighbours.

    Args:
        train: Labelled images that vote. Unlabeled rows are ignored.
        test: Images to classify; when None, each labelled ``train`` image is classified
            by the others (leave-one-out).
        k: Neighbours per vote.
        temperature: Vote weight ``exp(similarity / temperature)``.

    Returns:
        The report on the classified set (``test``, or ``train`` for leave-one-out).

    Raises:
        ContrastiveError: If a set has no labelled images, the labelled train images are
            all of one class, the test set has a class the training set lacks, or ``k``
            exceeds the voters available.
    """
    if temperature <= 0:
        raise ContrastiveError(f"temperature must be > 0, got {temperature}")
    voters = _labelled_rows(train, "train")
    present = np.unique(train.labels[voters])
    if len(present) < 2:
        # One class: every vote is right, and the report would say nothing.
        raise ContrastiveError(
            f"the labelled train images are all of one class ({train.classes[present[0]]}); "
            "kNN accuracy needs at least 2 classes"
        )
    num_classes = len(train.classes)
    if test is None:
        _check_k(k, len(voters) - 1, "the labelled train images other than the one scored")
        queries = voters
        predictions = _leave_one_out(
            train.embeddings[voters], train.labels[voters], k, temperature, num_classes
        )
        targets = train.labels[voters]
    else:
        queries, targets, predictions = _classify_test(train, voters, test, k, temperature)
    confusion = confusion_matrix(
        torch.from_numpy(predictions), torch.from_numpy(targets), num_classes
    ).numpy()
    return KnnReport(
        classes=train.classes.tolist(),
        indices=queries,
        targets=targets,
        predictions=predictions.astype(np.int64),
        confusion=confusion,
        k=k,
    )


def _classify_test(
    train: Embeddings, voters: np.ndarray, test: Embeddings, k: int, temperature: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kNN predictions of the labelled ``test`` rows by the ``voters`` rows of ``train``.

    Test labels are matched to the training classes by name, as ``contrastive eval``
    does, so a test folder lacking a class is scored in the training numbering.

    Returns:
        ``(rows, targets, predictions)`` of the labelled test images, targets in the
        training classes.

    Raises:
        ContrastiveError: If the test set has no labelled images or a class the training
            set lacks, or ``k`` exceeds the voters.
    """
    check_comparable(train, test)
    queries = _labelled_rows(test, "test")
    targets = align_test_labels(
        train.classes, test.labels[queries], test.classes, train_name="train", test_name="test"
    )
    _check_k(k, len(voters), "the labelled train images")
    ranking = knn_classify(
        torch.from_numpy(train.embeddings[voters]),
        torch.from_numpy(train.labels[voters]),
        torch.from_numpy(test.embeddings[queries]),
        k=k,
        temperature=temperature,
        num_classes=len(train.classes),
    )
    return queries, targets, ranking[:, 0].numpy()


def _check_k(k: int, voters: int, who: str) -> None:
    # Checked here so that Python callers read "k=...", not the evaluation's CLI wording.
    if not 1 <= k <= voters:
        raise ContrastiveError(f"k={k} must be between 1 and {voters} ({who})")


def _labelled_rows(dataset: Embeddings, role: str) -> np.ndarray:
    rows = np.flatnonzero(dataset.labels >= 0)
    if len(rows) == 0:
        raise ContrastiveError(f"the {role} embeddings have no labelled images to score")
    return rows


def _leave_one_out(
    embeddings: np.ndarray, labels: np.ndarray, k: int, temperature: float, num_classes: int
) -> np.ndarray:
    features = torch.from_numpy(embeddings)
    ranking = knn_classify(
        features,
        torch.from_numpy(labels),
        features,
        k=k,
        temperature=temperature,
        num_classes=num_classes,
        exclude=torch.arange(len(embeddings)),
    )
    return ranking[:, 0].numpy()


def plot_confusion(report: KnnReport, normalise: bool = True) -> Figure:
    """The confusion matrix, rows labelled with each class's accuracy.

    Args:
        report: From :func:`knn_report`.
        normalise: Show each row as fractions of the class (else raw counts).

    Returns:
        The figure.
    """
    counts = report.confusion.astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    values = (
        np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        if normalise
        else counts
    )
    num_classes = len(report.classes)
    side = max(4.0, 0.55 * num_classes + 2.5)
    figure = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    figure.colorbar(
        image, ax=ax, shrink=0.8, label="fraction of true class" if normalise else "images"
    )
    accuracies = report.per_class_accuracy
    ax.set_yticks(
        range(num_classes),
        [
            f"{name} ({acc:.0%})" if not np.isnan(acc) else f"{name} (-)"
            for name, acc in zip(report.classes, accuracies)
        ],
        fontsize=8,
    )
    ax.set_xticks(range(num_classes), report.classes, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (accuracy)")
    if num_classes <= _MAX_ANNOTATED_CLASSES:
        for (row, col), value in np.ndenumerate(values):
            if counts[row, col]:
                text = f"{value:.2f}" if normalise else f"{int(value)}"
                ax.text(
                    col,
                    row,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > 0.6 * values.max() else "black",
                )
    ax.set_title(
        f"kNN (k={report.k}) accuracy {report.accuracy:.1%} on {len(report.targets)} images"
    )
    return figure
