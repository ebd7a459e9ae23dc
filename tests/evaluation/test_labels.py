"""Train/test label alignment by class name, and the one-line errors of bad pairs."""

from __future__ import annotations

import warnings

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


def test_unlabeled_images_are_left_out_with_one_warning_that_counts_them() -> None:
    train = embeddings([0, -1, 1, -1], ["cat", "dog"])
    train.embeddings[:] = np.arange(4)[:, None]
    test = embeddings([-1, 1, 0], ["cat", "emu"])
    with pytest.warns(UserWarning) as record:
        pair = labeled_pair(train, embeddings([-1, 0, 1], ["cat", "dog"]))
    assert pair.train_features[:, 0].tolist() == [0.0, 2.0]
    assert pair.train_labels.tolist() == [0, 1] and pair.test_labels.tolist() == [0, 1]
    assert [str(warning.message) for warning in record] == [
        "--train: 2 of its 4 images have no label (outside the class sub-folders, or not in "
        "the label table; e.g. 1.png) and are left out: evaluating its 2 labeled images",
        "--test: 1 of its 3 images have no label (outside the class sub-folders, or not in "
        "the label table; e.g. 0.png) and are left out: evaluating its 2 labeled images",
    ]
    # An unlabeled image's class is no class: only the labeled ones are checked.
    with pytest.raises(ContrastiveError, match="--test has 1 class\\(es\\) not in --train: emu"):
        labeled_pair(train, test)


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
            embeddings([0, -1], ["cat", "dog"]),
            embeddings([0], ["cat"]),
            "--train holds one class \\(cat\\)",
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


def test_a_finished_runs_folder_weights_and_last_checkpoint_are_one_source(tmp_path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "backbone.pt", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        (run / name).write_text("")
    same = [str(run), str(run / "backbone.pt"), str(run / "checkpoints" / "last.ckpt")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for source in same[1:]:
            labeled_pair(
                embeddings([0, 1], ["cat", "dog"], source=same[0]),
                embeddings([0], ["cat"], source=source),
            )
    # best.ckpt holds other weights.
    best = embeddings([0], ["cat"], source=str(run / "checkpoints" / "best.ckpt"))
    with pytest.warns(UserWarning, match="different checkpoints"):
        labeled_pair(embeddings([0, 1], ["cat", "dog"], source=same[0]), best)
    # An unfinished run's folder is read from its last.ckpt: the same weights, no warning.
    (run / "backbone.pt").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labeled_pair(
            embeddings([0, 1], ["cat", "dog"], source=same[0]),
            embeddings([0], ["cat"], source=same[2]),
        )
    with pytest.warns(UserWarning, match="different checkpoints"):
        labeled_pair(embeddings([0, 1], ["cat", "dog"], source=same[2]), best)


def test_class_names_match_whatever_their_unicode_form() -> None:
    # "café" as a Mac writes it (e + combining accent) and as Linux does (one character).
    decomposed, composed = "cafe\u0301", "caf\u00e9"
    pair = labeled_pair(
        embeddings([0, 1], ["bar", decomposed]), embeddings([0, 1], ["bar", composed])
    )
    assert pair.test_labels.tolist() == [0, 1]


def test_test_images_that_are_also_training_images_are_warned_about(tmp_path) -> None:
    train = embeddings([0, 1, 0], ["cat", "dog"])
    test = embeddings([0, 1], ["cat", "dog"])  # 0.png and 1.png, as in train
    train.data_root, test.data_root = tmp_path, tmp_path / "." / ""
    with pytest.warns(UserWarning, match="share 2 of the 2 test images \\(e\\.g\\. 0\\.png\\)"):
        labeled_pair(train, test)
    test.data_root = tmp_path / "elsewhere"  # other folders may reuse file names
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labeled_pair(train, test)


def test_class_names_near_the_training_ones_are_suggested() -> None:
    train = embeddings([0, 1, 2], ["daisy", "rose", "tulip"])
    test = embeddings([0, 1, 2], ["Daisy", "roses", "zebra"])
    with pytest.raises(ContrastiveError) as raised:
        labeled_pair(train, test)
    message = str(raised.value)
    assert "3 class(es) not in --train: Daisy, roses, zebra" in message
    assert "(near --train's: Daisy -> daisy, roses -> rose; class names are" in message
    far = embeddings([0], ["zebra"])
    with pytest.raises(ContrastiveError) as raised:
        labeled_pair(train, far)
    assert "near" not in str(raised.value)
