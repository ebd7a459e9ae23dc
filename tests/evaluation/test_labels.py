"""Train/test label alignment by class name, and the one-line errors of bad pairs."""

from __future__ import annotations

import numpy as np
import pytest

from contrastive.embeddings import Embeddings
from contrastive.errors import ContrastiveError
from contrastive.evaluation.labels import labeled_pair


def embeddings(
    labels: list[int],
    classes: list[str],
    width: int = 2,
    source: str = "runs/a",
    feature: str = "backbone",
) -> Embeddings:
    count = len(labels)
    return Embeddings(
        np.zeros((count, width), np.float32),
        np.array([f"{i}.png" for i in range(count)]),
        np.array(labels),
        np.array(classes),
        source=source,
        feature=feature,
    )


def test_test_labels_are_renumbered_by_class_name() -> None:
    # The test folder lacks "bird", so its own numbering is cat=0, dog=1.
    pair = labeled_pair(
        embeddings([0, 1, 2], ["bird", "cat", "dog"]), embeddings([1, 0, 1], ["cat", "dog"])
    )
    assert pair.test_labels.tolist() == [2, 1, 2]
    assert pair.train_labels.tolist() == [0, 1, 2]
    assert pair.classes == ["bird", "cat", "dog"]


@pytest.mark.parametrize(
    ("train", "test", "message"),
    [
        (
            embeddings([0, 1], ["cat", "dog"]),
            embeddings([0, 1], ["cat", "emu"]),
            "--test has 1 class\\(es\\) not in --train: emu",
        ),
        (
            embeddings([0, 1], ["cat", "dog"]),
            embeddings([0], ["cat"], width=3),
            "widths differ: --train has 2-d, --test has 3-d",
        ),
        (embeddings([-1, -1], []), embeddings([0], ["cat"]), "--train is unlabeled"),
        (
            embeddings([0, 1], ["cat", "dog"]),
            embeddings([0, -1], ["cat"]),
            "--test has 1 image\\(s\\) outside class sub-folders",
        ),
        (embeddings([], []), embeddings([0], ["cat"]), "--train holds no images"),
        (
            embeddings([1, 1], ["cat", "dog"]),
            embeddings([0], ["dog"]),
            "--train holds one class \\(dog\\): accuracy needs images of at least two",
        ),
        (
            embeddings([0, 1], ["cat", "dog"]),
            embeddings([0], ["cat"], feature="projector"),
            "--train holds backbone features, --test projector features",
        ),
    ],
)
def test_bad_pairs_raise_one_line_errors(train: Embeddings, test: Embeddings, message: str) -> None:
    with pytest.raises(ContrastiveError, match=message) as error:
        labeled_pair(train, test)
    assert "\n" not in str(error.value)


def test_features_of_two_checkpoints_are_paired_with_a_warning() -> None:
    train, test = embeddings([0, 1], ["cat", "dog"]), embeddings([0], ["cat"], source="runs/b")
    with pytest.warns(UserWarning, match="different checkpoints \\(runs/a and runs/b\\)"):
        labeled_pair(train, test)
