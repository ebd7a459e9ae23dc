"""Planted flipped labels in well-separated clusters are the label issues cleanlab flags."""

from __future__ import annotations

import numpy as np
import pytest

from contrastive.curation.label_issues import find_label_issues, out_of_fold_probabilities
from contrastive.errors import ContrastiveError

CLASSES = 4
PER_CLASS = 50


def separated(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    centres = 6.0 * np.eye(16, dtype=np.float32)[:CLASSES]
    return (centres[labels] + rng.standard_normal((len(labels), 16))).astype(np.float32), labels


def test_flipped_labels_are_found_with_their_true_class() -> None:
    embeddings, truth = separated()
    rng = np.random.default_rng(1)
    flipped = np.sort(rng.choice(len(truth), size=10, replace=False))
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, CLASSES, size=10)) % CLASSES
    given[[5, 6]] = -1  # unlabeled images are left out
    issues = find_label_issues(embeddings, given, CLASSES)
    planted = set(flipped.tolist()) - {5, 6}
    found = set(issues.issues.tolist())
    # Every flip is found; at most one true label is doubted (a point deep in the noise).
    assert planted <= found and len(found - planted) <= 1
    assert set(issues.issues[: len(planted)].tolist()) == planted  # ranked first
    rows = sorted(planted)
    assert (issues.suggested[rows] == truth[rows]).all()
    assert np.isnan(issues.quality[[5, 6]]).all() and (issues.suggested[[5, 6]] == -1).all()
    # The lowest-quality labels are the flips.
    assert set(issues.ranked(len(planted) / 198).tolist()) == planted


def test_probabilities_are_out_of_fold() -> None:
    # Pure noise: a probe that saw an image's label would be confident on it; out of fold it
    # is not, so the mean probability of the given class stays near chance.
    rng = np.random.default_rng(0)
    features = rng.standard_normal((120, 64)).astype(np.float32)
    labels = np.repeat(np.arange(3), 40)
    probabilities = out_of_fold_probabilities(features, labels, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert probabilities[np.arange(120), labels].mean() < 0.45


def test_unlabeled_or_single_class_data_is_refused() -> None:
    embeddings, _ = separated()
    with pytest.raises(ContrastiveError, match="no class sub-folders"):
        find_label_issues(embeddings, np.full(len(embeddings), -1), CLASSES)
    with pytest.raises(ContrastiveError, match="at least two classes"):
        find_label_issues(embeddings, np.zeros(len(embeddings), np.int64), CLASSES)


def test_folds_are_capped_at_the_largest_class_with_a_warning() -> None:
    # Four images a class: scikit-learn refuses five stratified folds.
    embeddings, labels = separated()
    keep = np.concatenate([np.flatnonzero(labels == c)[:4] for c in range(CLASSES)])
    with pytest.warns(UserWarning, match="folds=5 lowered to 4: the largest class has only 4"):
        found = find_label_issues(embeddings[keep], labels[keep], CLASSES)
    assert found.probabilities.shape == (len(keep), CLASSES)
    assert not np.isnan(found.quality).any()


def test_classes_of_one_image_cannot_be_cross_validated() -> None:
    embeddings, _ = separated()
    with pytest.raises(ContrastiveError, match="not enough labeled images per class"):
        out_of_fold_probabilities(embeddings[:4], np.arange(4), CLASSES)


def test_classes_too_small_to_judge_are_named_by_folder() -> None:
    # Class 2 keeps one image: cleanlab cannot prune it and says so by its index ("class: 2").
    embeddings, labels = separated()
    keep = np.flatnonzero((labels != 2) | (np.arange(len(labels)) == 2 * PER_CLASS))
    with pytest.warns(UserWarning) as caught:
        find_label_issues(embeddings[keep], labels[keep], CLASSES, class_names=list("wxyz"))
    messages = [str(warning.message) for warning in caught]
    assert (
        "label mistakes may be missed in 1 class(es) with too few labeled images to judge: "
        "y (1 labeled)"
    ) in messages
    assert not any("May not flag" in message for message in messages)
