"""Classification metrics shared by the kNN and linear evaluations: top-k, confusion, per class.

:func:`topk_accuracy` is the package's one top-k (and top-1) accuracy. It scores class
*rankings* (the kNN vote's and the probe's), not class scores, so the accuracy follows the
ranking's own tie order: scikit-learn's ``top_k_accuracy_score`` takes ``(M, C)`` scores,
re-sorts them with its own tie order and refuses 2-D scores for two classes. The confusion
matrix is scikit-learn's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
import sklearn.metrics
import torch
from torch import Tensor

from contrastive.errors import ContrastiveError


def topk_accuracy(
    ranked_classes: Tensor, targets: Tensor, topk: Sequence[int] = (1, 5)
) -> dict[int, float]:
    """Fraction of samples whose true class is among the first ``k`` ranked classes.

    Args:
        ranked_classes: ``(M, R)`` class indices, most likely first (``R >= 1``).
        targets: ``(M,)`` true class indices.
        topk: The ``k`` values; a ``k`` larger than ``R`` counts all ``R`` ranks.

    Returns:
        ``{k: accuracy}`` with accuracies in [0, 1].

    Raises:
        ContrastiveError: If ``ranked_classes`` is not ``(M, R)`` for the ``M`` targets.
    """
    if ranked_classes.ndim != 2 or ranked_classes.shape[0] != targets.numel():
        raise ContrastiveError(
            f"ranked_classes must be (M, R) with one row per target ({targets.numel()}), "
            f"got shape {tuple(ranked_classes.shape)}"
        )
    hits = ranked_classes == targets.reshape(-1, 1)
    count = max(1, targets.numel())
    return {k: hits[:, :k].any(dim=1).sum().item() / count for k in topk}


def confusion_matrix(predicted: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """Counts of (true class, predicted class) pairs.

    Args:
        predicted: ``(M,)`` predicted class indices.
        targets: ``(M,)`` true class indices.
        num_classes: ``C``.

    Returns:
        ``(C, C)`` int64 matrix; row = true class, column = predicted class.
    """
    if targets.numel() == 0:  # scikit-learn refuses empty input
        return torch.zeros(num_classes, num_classes, dtype=torch.int64)
    counts = sklearn.metrics.confusion_matrix(
        targets.cpu().numpy(), predicted.cpu().numpy(), labels=np.arange(num_classes)
    )
    return torch.from_numpy(counts.astype(np.int64))


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """Recall of each class from a confusion matrix.

    Args:
        confusion: ``(C, C)`` counts, row = true class.

    Returns:
        ``(C,)`` float64 accuracies; NaN for classes without test samples.
    """
    totals = confusion.sum(dim=1).double()
    correct = confusion.diagonal().double()
    return torch.where(totals > 0, correct / totals.clamp_min(1), torch.nan)


def classification_summary(
    ranked_classes: Tensor, targets: Tensor, num_classes: int, topk: Sequence[int] = (1, 5)
) -> dict[str, object]:
    """Top-k accuracies, per-class accuracy and confusion matrix in one JSON-ready dict.

    Args:
        ranked_classes: ``(M, R)`` class indices, most likely first.
        targets: ``(M,)`` true class indices.
        num_classes: ``C``.
        topk: The ``k`` values of the top-k accuracies.

    Returns:
        ``{"top1": .., "top5": .., "per_class_accuracy": [C floats or None],
        "confusion_matrix": [[C ints] * C]}``.
    """
    summary: dict[str, object] = {
        f"top{k}": value for k, value in topk_accuracy(ranked_classes, targets, topk).items()
    }
    confusion = confusion_matrix(ranked_classes[:, 0], targets, num_classes)
    summary["per_class_accuracy"] = [
        None if torch.isnan(value) else float(value) for value in per_class_accuracy(confusion)
    ]
    summary["confusion_matrix"] = confusion.tolist()
    return summary


def accuracy_interval(accuracy: float, count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of an accuracy measured on ``count`` test images (SciPy's).

    It covers which test images happened to be drawn (binomial sampling), not the training
    run's own seed-to-seed spread (Wilson, 1927).

    Raises:
        ContrastiveError: If ``count`` is not positive or ``accuracy`` is outside [0, 1].
    """
    if count < 1:
        raise ContrastiveError(f"an accuracy interval needs at least 1 test image, got {count}")
    if not 0.0 <= accuracy <= 1.0:
        raise ContrastiveError(f"accuracy must be in [0, 1], got {accuracy}")
    hits = round(accuracy * count)
    interval = scipy.stats.binomtest(hits, count).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class Gain:
    """How much one feature set beats another in top-1 (fractions; may be negative).

    Attributes:
        mean: Mean difference over draws.
        low: Lower end of the 95% interval.
        high: Upper end.
    """

    mean: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        """JSON-ready numbers."""
        return {"mean": self.mean, "low": self.low, "high": self.high}


def paired_gain(hits: Tensor, baseline_hits: Tensor, confidence: float = 0.95) -> Gain:
    """Top-1 of one feature set minus another's, scored on the same draws and test images.

    Args:
        hits: ``(draws, M)`` bool (or ``(M,)`` for one draw): whether each test image was
            classified right in each draw of labeled images.
        baseline_hits: The same for the other feature set.
        confidence: Level of the interval.

    The difference is paired: each draw labels the same images for both, and each test
    image is classified by both, so the spread both share cancels. Its interval covers
    which images were labeled (the spread of the per-draw differences over draws) and which
    test images were drawn (the spread over test images of the per-image difference, averaged
    over draws), added as variances under a normal approximation. Averaging over draws
    leaves some of the draw spread in the second term, so the interval errs wide. With
    one draw (``all`` labels) only the test-image term is left.

    Raises:
        ContrastiveError: If the two do not match in shape.
    """
    if hits.shape != baseline_hits.shape:
        raise ContrastiveError(
            f"a paired gain needs hits on the same draws and images, got {tuple(hits.shape)} "
            f"and {tuple(baseline_hits.shape)}"
        )
    difference = hits.double() - baseline_hits.double()  # (draws, M), each -1, 0 or 1
    if difference.ndim == 1:
        difference = difference.unsqueeze(0)
    draws, images = difference.shape
    if images == 0:
        return Gain(math.nan, math.nan, math.nan)
    per_draw = difference.mean(dim=1)
    mean = float(per_draw.mean())
    variance = float(per_draw.var()) / draws if draws > 1 else 0.0
    if images > 1:
        variance += float(difference.mean(dim=0).var()) / images
    half = float(scipy.stats.norm.ppf(0.5 + confidence / 2)) * math.sqrt(variance)
    return Gain(mean, mean - half, mean + half)
