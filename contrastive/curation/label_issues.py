"""Suspected label mistakes: cleanlab on out-of-fold probabilities of a probe on embeddings.

A logistic-regression probe (:func:`contrastive.evaluation.linear.fit_logistic_regression`,
the package's probe) is fitted on the embeddings of all folds but one and predicts class
probabilities for the held-out fold, so every image gets probabilities from a model that
never saw its label. cleanlab's ``find_label_issues`` (confident learning: Northcutt, Jiang
& Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021) turns
them into the images whose given class is probably wrong, ranked by self-confidence (the
probability of the given class), with the most probable class as the suggestion.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from contrastive.curation.settings import DEFAULT_FOLDS
from contrastive.errors import ContrastiveError
from contrastive.evaluation.linear import fit_logistic_regression, standardization

#: L-BFGS iterations of each fold's probe.
PROBE_ITERATIONS = 200


@dataclass
class LabelIssues:
    """Out-of-fold probabilities and the suspected label mistakes among labeled images.

    Attributes:
        probabilities: ``(N, C)`` float32 out-of-fold class probabilities (rows of
            unlabeled images are all zero).
        quality: ``(N,)`` float32 label quality, the probability of the given class
            (cleanlab's self-confidence); NaN for unlabeled images.
        issues: ``(I,)`` int64 image indices cleanlab flags, most suspicious first.
        suggested: ``(N,)`` int64 most probable class of each image (-1 when unlabeled).
    """

    probabilities: np.ndarray
    quality: np.ndarray
    issues: np.ndarray
    suggested: np.ndarray

    def ranked(self, fraction: float) -> np.ndarray:
        """The ``fraction`` of labeled images of lowest label quality, lowest first."""
        labeled = np.flatnonzero(~np.isnan(self.quality))
        order = labeled[np.argsort(self.quality[labeled], kind="stable")]
        return order[: int(round(fraction * len(labeled)))]


def fold_count(labels: np.ndarray, folds: int) -> int:
    """The folds to split ``labels`` into: ``folds``, capped at the largest class's size.

    A stratified split needs every fold to be able to hold an image of the largest class
    (scikit-learn refuses more folds than that); smaller classes are spread over fewer
    folds. The cap is announced with a warning, since it changes how much each probe fits.

    Raises:
        ContrastiveError: If no class has two images (nothing can be held out and still
            leave an example of the class to fit).
    """
    largest = int(np.bincount(labels).max()) if len(labels) else 0
    if largest < 2:
        raise ContrastiveError(
            "not enough labeled images per class to cross-validate: label-mistake detection "
            f"needs a class with at least 2 images, the largest has {largest}"
        )
    if folds > largest:
        warnings.warn(
            f"folds={folds} lowered to {largest}: the largest class has only {largest} "
            "labeled images",
            stacklevel=3,
        )
    return min(folds, largest)


def out_of_fold_probabilities(
    embeddings: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    folds: int = DEFAULT_FOLDS,
    weight_decay: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Class probabilities of each image from a probe fitted on the other folds.

    Args:
        embeddings: ``(N, D)`` features of labeled images.
        labels: ``(N,)`` int labels in ``[0, num_classes)``.
        num_classes: ``C``.
        folds: Stratified folds (a class smaller than this is spread as it can be); at
            most the largest class's images, see :func:`fold_count`.
        weight_decay: The probe's ``wd``; default ``1 / fitted images``.
        seed: Seed of the fold split.

    Returns:
        ``(N, C)`` float32 probabilities.

    Raises:
        ContrastiveError: With fewer than two classes, ``folds < 2``, or no class of two
            images or more.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise ContrastiveError("label-mistake detection needs images of at least two classes")
    if folds < 2:
        raise ContrastiveError(f"folds must be at least 2, got {folds}")
    features = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    targets = torch.from_numpy(labels)
    probabilities = np.zeros((len(labels), num_classes), dtype=np.float32)
    splitter = StratifiedKFold(n_splits=fold_count(labels, folds), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # A class smaller than the folds is fine: its images are spread over fewer folds.
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        splits = list(splitter.split(np.zeros(len(labels)), labels))
    for fit_rows, held_rows in splits:
        fit_rows, held_rows = torch.from_numpy(fit_rows), torch.from_numpy(held_rows)
        mean, std = standardization(features[fit_rows])
        weight, bias = fit_logistic_regression(
            (features[fit_rows] - mean) / std,
            targets[fit_rows],
            num_classes,
            weight_decay if weight_decay is not None else 1.0 / len(fit_rows),
            PROBE_ITERATIONS,
        )
        logits = ((features[held_rows] - mean) / std) @ weight.T + bias
        probabilities[held_rows.numpy()] = torch.softmax(logits, dim=1).numpy()
    return probabilities


#: cleanlab's warning about a class too small to prune, which names it by its index.
_SMALL_CLASS_WARNING = re.compile(r"May not flag all label issues in class: (\d+)")


def _rename_small_class_warnings(
    caught: Sequence[warnings.WarningMessage],
    given: np.ndarray,
    class_names: Sequence[str] | None,
) -> None:
    """Re-issues cleanlab's per-class warnings as one, naming the class folders.

    cleanlab says "class: 3", the index into its own numbering, which a person cannot
    match to a folder; other warnings pass through unchanged.
    """
    small = []
    for message in caught:
        match = _SMALL_CLASS_WARNING.search(str(message.message))
        if match is None:
            warnings.warn_explicit(
                message.message, message.category, message.filename, message.lineno
            )
            continue
        index = int(match.group(1))
        name = class_names[index] if class_names is not None else str(index)
        small.append(f"{name} ({int((given == index).sum())} labeled)")
    if small:
        warnings.warn(
            f"label mistakes may be missed in {len(small)} class(es) with too few labeled "
            f"images to judge: {', '.join(small[:10])}" + (" ..." if len(small) > 10 else ""),
            stacklevel=3,
        )


def find_label_issues(
    embeddings: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    folds: int = DEFAULT_FOLDS,
    weight_decay: float | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> LabelIssues:
    """Suspected label mistakes among the labeled images (label ``-1`` is left out).

    Args:
        embeddings: ``(N, D)`` embeddings.
        labels: ``(N,)`` int labels, -1 for unlabeled images.
        num_classes: ``C``.
        folds: Folds of the out-of-fold probabilities.
        weight_decay: The probe's ``wd`` (default ``1 / fitted images``).
        seed: Seed of the fold split.
        class_names: ``(C,)`` names, for the warning about classes too small to judge.

    Returns:
        The probabilities, label quality, flagged images and suggested classes.

    Raises:
        ContrastiveError: If no image is labeled, fewer than two classes are, or cleanlab
            is not installed.
    """
    try:
        from cleanlab.filter import find_label_issues as cleanlab_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError as error:
        raise ContrastiveError(
            "label-mistake detection needs cleanlab: pip install cleanlab"
        ) from error
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if labels.shape != (len(embeddings),):
        raise ContrastiveError(f"{len(labels)} labels for {len(embeddings)} embeddings")
    labeled = np.flatnonzero(labels >= 0)
    if len(labeled) == 0:
        raise ContrastiveError(
            "label-mistake detection needs labels: the folder has no class sub-folders"
        )
    given = labels[labeled]
    probabilities = np.zeros((len(labels), num_classes), dtype=np.float32)
    probabilities[labeled] = out_of_fold_probabilities(
        embeddings[labeled], given, num_classes, folds, weight_decay, seed
    )
    held = probabilities[labeled].astype(np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flagged = cleanlab_label_issues(
            given, held, return_indices_ranked_by="self_confidence", n_jobs=1
        )
    _rename_small_class_warnings(caught, given, class_names)
    quality = np.full(len(labels), np.nan, dtype=np.float32)
    quality[labeled] = get_label_quality_scores(given, held, method="self_confidence")
    suggested = np.full(len(labels), -1, dtype=np.int64)
    suggested[labeled] = held.argmax(axis=1)
    return LabelIssues(probabilities, quality, labeled[np.asarray(flagged, np.int64)], suggested)
