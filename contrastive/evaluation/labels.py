"""Checks that a train/test pair of embeddings can be evaluated, and aligns their labels.

Each embeddings file numbers its classes by its own sorted class-folder names, so a test
folder lacking a class would number the rest differently: labels are matched by name.
"""

from __future__ import annotations

import difflib
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from contrastive.embeddings import Embeddings
from contrastive.encoder import same_weights_source
from contrastive.errors import ContrastiveError
from contrastive.files import same_path


@dataclass
class LabeledPair:
    """Train and test features with labels in one class numbering.

    Attributes:
        train_features: ``(N, D)`` float32.
        train_labels: ``(N,)`` int64 indices into ``classes``.
        test_features: ``(M, D)`` float32.
        test_labels: ``(M,)`` int64 indices into ``classes``.
        classes: The training classes, sorted.
    """

    train_features: Tensor
    train_labels: Tensor
    test_features: Tensor
    test_labels: Tensor
    classes: list[str]


def check_comparable(
    train: Embeddings, test: Embeddings, train_name: str = "train", test_name: str = "test"
) -> None:
    """Refuses features of different kinds or widths, and warns where two checkpoints
    embedded the two sets (a kNN across two trainings scores at chance: 10.1% on CIFAR-10).

    Raises:
        ContrastiveError: If the kinds of feature (backbone, projector, raw pixels) or
            the widths differ.
    """
    if train.feature != test.feature:
        raise ContrastiveError(
            f"{train_name} holds {train.feature} features, {test_name} {test.feature} "
            "features: they are not comparable; embed both the same way"
        )
    if train.source and test.source and not same_weights_source(train.source, test.source):
        # The same weights may sit at two paths (a copied run), so this is not refused.
        warnings.warn(
            f"{train_name} and {test_name} were embedded by different checkpoints "
            f"({train.source} and {test.source}); features of two trainings are not "
            "comparable, and the scores mean nothing unless the weights are the same",
            stacklevel=3,
        )
    if train.preprocessing and test.preprocessing and train.preprocessing != test.preprocessing:
        warnings.warn(
            f"{train_name} and {test_name} were embedded with other preprocessing "
            f"({train.preprocessing}; {test.preprocessing}): their features are not "
            "comparable; embed both with the same --input-size, --mean and --std",
            stacklevel=3,
        )
    if train.embeddings.shape[1] != test.embeddings.shape[1]:
        raise ContrastiveError(
            f"embedding widths differ: {train_name} has {train.embeddings.shape[1]}-d, "
            f"{test_name} has {test.embeddings.shape[1]}-d features"
        )


def labeled_pair(
    train: Embeddings, test: Embeddings, train_name: str = "--train", test_name: str = "--test"
) -> LabeledPair:
    """Validates a train/test pair and expresses test labels in the training classes.

    Images without a label (outside class folders, or not named by a label table) are left
    out of either set, with a warning that counts them: a mostly unlabeled folder is
    evaluated on its labeled images.

    Args:
        train: Training embeddings.
        test: Test embeddings.
        train_name: How to name the training input in errors (argument or path).
        test_name: Likewise for the test input.

    Raises:
        ContrastiveError: If either holds no labeled image, the training set holds one class
            only, their widths or kinds of feature differ, or the test set has classes the
            training set lacks.
    """
    check_label_sets(
        train.labels,
        train.classes,
        train.paths,
        test.labels,
        test.classes,
        test.paths,
        train_name,
        test_name,
    )
    _warn_shared_images(train, test, train_name, test_name)
    check_comparable(train, test, train_name, test_name)
    train, test = labeled_only(train, train_name), labeled_only(test, test_name)
    test_labels = align_test_labels(train.classes, test.labels, test.classes, train_name, test_name)
    return LabeledPair(
        train_features=torch.from_numpy(np.ascontiguousarray(train.embeddings, np.float32)),
        train_labels=torch.from_numpy(train.labels.astype(np.int64)),
        test_features=torch.from_numpy(np.ascontiguousarray(test.embeddings, np.float32)),
        test_labels=torch.from_numpy(test_labels),
        classes=[str(c) for c in train.classes],
    )


def labeled_rows(embeddings: Embeddings, name: str) -> np.ndarray:
    """Indices of the labeled images, with a warning that counts the others (if any).

    Args:
        embeddings: Any embeddings.
        name: How to name them in the warning.
    """
    labels = embeddings.labels
    rows = np.flatnonzero(labels >= 0)
    unlabeled = len(labels) - len(rows)
    if unlabeled and len(rows):  # with none, the caller's error says so
        example = embeddings.paths[int(np.flatnonzero(labels < 0)[0])]
        warnings.warn(
            f"{name}: {unlabeled:,} of its {len(labels):,} images have no label (outside the "
            f"class sub-folders, or not in the label table; e.g. {example}) and are left out: "
            f"evaluating its {len(rows):,} labeled images",
            stacklevel=3,
        )
    return rows


def labeled_only(embeddings: Embeddings, name: str) -> Embeddings:
    """The labeled images of ``embeddings`` (all of it when every image has a label), with
    a warning that counts the others."""
    return labeled_alike({name: embeddings}, name)[name]


def labeled_alike(sets: Mapping[str, Embeddings], name: str) -> dict[str, Embeddings]:
    """The labeled images of feature sets of the same images (the first set's labels decide),
    with one warning that counts the others.

    Args:
        sets: ``{feature set: embeddings}``, each of the same images in the same order.
        name: How to name the images in the warning.
    """
    first = next(iter(sets.values()))
    rows = labeled_rows(first, name)
    if len(rows) in (0, len(first)):  # with none labeled, the pair's error says so
        return dict(sets)
    return {key: embedded.subset(rows) for key, embedded in sets.items()}


def check_label_sets(
    train_labels: np.ndarray,
    train_classes: Sequence[str],
    train_paths: Sequence[str] | None,
    test_labels: np.ndarray,
    test_classes: Sequence[str],
    test_paths: Sequence[str] | None,
    train_name: str = "--train",
    test_name: str = "--test",
) -> np.ndarray:
    """The checks of :func:`labeled_pair` that need labels only (so run before embedding).

    Args:
        train_labels: ``(N,)`` indices into ``train_classes``; -1 outside class folders.
        train_classes: Training class names.
        train_paths: The training images, to name one in a message (or None).
        test_labels: ``(M,)`` indices into ``test_classes``.
        test_classes: Test class names.
        test_paths: The test images, likewise.
        train_name: The training input's name in messages.
        test_name: The test input's name in messages.

    Returns:
        ``(M,)`` int64 test labels as indices into ``train_classes`` (-1 where unlabeled).

    Raises:
        ContrastiveError: If either holds no labeled image, the training set holds one
            class only, or the test set has classes the training set lacks.
    """
    check_labels(train_labels, train_classes, train_name, train_paths, allow_unlabeled=True)
    check_labels(test_labels, test_classes, test_name, test_paths, allow_unlabeled=True)
    present = np.unique(train_labels[train_labels >= 0])
    if len(present) < 2:
        # Every prediction would be that class: 100% that says nothing.
        raise ContrastiveError(
            f"{train_name} holds one class ({train_classes[int(present[0])]}): accuracy "
            "needs images of at least two classes"
        )
    return align_test_labels(train_classes, test_labels, test_classes, train_name, test_name)


def _warn_shared_images(
    train: Embeddings, test: Embeddings, train_name: str, test_name: str
) -> None:
    """Warns when test images are also in the training set (each would find itself)."""
    if train.data_root is None or test.data_root is None:
        return
    if not same_path(train.data_root, test.data_root):
        return
    shared = np.intersect1d(train.paths.astype(str), test.paths.astype(str))
    if len(shared):
        warnings.warn(
            f"{train_name} and {test_name} share {len(shared)} of the {len(test.paths)} test "
            f"images (e.g. {shared[0]}): each finds itself, so the scores are inflated; "
            "evaluate on images kept out of training",
            stacklevel=3,
        )


def check_labels(
    labels: np.ndarray,
    classes: Sequence[str],
    name: str,
    paths: Sequence[str] | None = None,
    allow_unlabeled: bool = False,
) -> None:
    """Raises unless the images have class labels.

    Args:
        labels: ``(N,)`` indices into ``classes``; -1 for unlabeled images.
        classes: Class names.
        name: The input's name in the message.
        paths: The images' paths, to name one outside the class folders.
        allow_unlabeled: Accept some unlabeled images (at least one must have a label).

    Raises:
        ContrastiveError: If there are no images, no labeled ones, or (unless allowed)
            unlabeled ones.
    """
    if len(labels) == 0:
        raise ContrastiveError(f"{name} holds no images")
    unlabeled = int((labels < 0).sum())
    if unlabeled == len(labels):
        raise ContrastiveError(
            f"{name} is unlabeled: evaluation needs one sub-folder per class, or --labels "
            "FILE (a CSV of image,label rows)"
        )
    if unlabeled and not allow_unlabeled:
        example = (
            f" (e.g. {paths[int(np.flatnonzero(labels < 0)[0])]})" if paths is not None else ""
        )
        raise ContrastiveError(
            f"{name} has {unlabeled} image(s) outside class sub-folders{example}; evaluation "
            "needs every image in a class folder"
        )
    if int(labels.max()) >= len(classes):
        raise ContrastiveError(f"{name}: labels index past its {len(classes)} classes")


def align_test_labels(
    train_classes: Sequence[str],
    test_labels: np.ndarray,
    test_classes: Sequence[str],
    train_name: str = "--train",
    test_name: str = "--test",
) -> np.ndarray:
    """Renumbers test labels by class name into the training classes.

    Args:
        train_classes: ``(C,)`` training class names.
        test_labels: ``(M,)`` indices into ``test_classes``.
        test_classes: Test class names.
        train_name: The training input's name in the message.
        test_name: The test input's name in the message.

    Returns:
        ``(M,)`` int64 indices into ``train_classes`` (-1 stays -1: unlabeled).

    Raises:
        ContrastiveError: If a test image's class is not among the training classes.
    """
    test_labels = np.asarray(test_labels, dtype=np.int64)
    if len(test_classes) == 0:
        return np.full(len(test_labels), -1, dtype=np.int64)
    train_index = {_class_key(name): i for i, name in enumerate(train_classes)}
    present = sorted({str(test_classes[i]) for i in np.unique(test_labels[test_labels >= 0])})
    unseen = [name for name in present if _class_key(name) not in train_index]
    if unseen:
        shown = ", ".join(unseen[:5]) + (" ..." if len(unseen) > 5 else "")
        raise ContrastiveError(
            f"{test_name} has {len(unseen)} class(es) not in {train_name}: {shown}"
            + _near_names(unseen[:5], [str(name) for name in train_classes], train_name)
        )
    remap = np.array(
        [train_index.get(_class_key(name), -1) for name in test_classes], dtype=np.int64
    )
    return np.where(test_labels >= 0, remap[np.maximum(test_labels, 0)], -1)


def _near_names(unseen: Sequence[str], known: Sequence[str], known_name: str) -> str:
    """`` (near --train's: Daisy -> daisy, ...)`` for names that differ from a known class
    only in case, a plural ``s`` or a near spelling; empty where none is close."""
    folded = {name.casefold(): name for name in known}
    pairs = []
    for name in unseen:
        key = name.casefold()
        match = folded.get(key) or folded.get(key.removesuffix("s")) or folded.get(key + "s")
        if match is None:
            close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.8)
            match = folded[close[0]] if close else None
        if match is not None:
            pairs.append(f"{name} -> {match}")
    if not pairs:
        return ""
    return (
        f" (near {known_name}'s: {', '.join(pairs)}; class names are the sub-folder names and "
        "must match exactly)"
    )


def _class_key(name: object) -> str:
    """A class name as compared across folders: ``café`` copied from a Mac (decomposed,
    NFD) and typed on Linux (composed, NFC) are one class."""
    return unicodedata.normalize("NFC", str(name))
