"""Feature sets to evaluate: from embeddings files or folders, with optional baselines.

Every evaluation can put its floor beside it: the same architecture at random init, and the
raw pixels the network sees (:class:`~contrastive.embeddings.RawPixels`). Folders are
embedded once for all requested feature sets.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from contrastive.data.folder import ImageFolder
from contrastive.data.image_files import IMAGE_EXTENSIONS
from contrastive.data.label_table import LabelMatch, LabelTable, match_labels, unmatched_rows
from contrastive.embeddings import (
    Embeddings,
    RawPixels,
    embed_folder,
    image_files,
    load_embeddings,
    with_label_table,
)
from contrastive.encoder import (
    Encoder,
    MissingConfigurationError,
    feature_extractor,
    load_encoder,
    random_init_encoder,
    same_weights_source,
)
from contrastive.errors import ContrastiveError
from contrastive.evaluation.labels import check_label_sets, labeled_alike
from contrastive.evaluation.settings import MODEL, RANDOM_INIT, RAW_PIXELS
from contrastive.files import same_path


@dataclass(frozen=True)
class EmbedSettings:
    """How folders are embedded.

    Attributes:
        batch_size: Images per batch.
        num_workers: DataLoader worker processes; None chooses them
            (:func:`~contrastive.embeddings.loader_workers`).
        device: Where to compute.
        progress: Show progress bars.
        projector: Use the projection head's output instead of backbone features.
        seed: Seed of the random-init baseline.
        full_decode: Decode large JPEGs whole (see
            :func:`~contrastive.embeddings.embed_folder`).
    """

    batch_size: int = 256
    num_workers: int | None = 0
    device: str = "cpu"
    progress: bool = True
    projector: bool = False
    seed: int = 0
    full_decode: bool = False


def baseline_extractors(encoder: Encoder, seed: int = 0) -> dict[str, nn.Module]:
    """The baselines' feature modules: the random-init backbone and raw pixels."""
    return {
        RANDOM_INIT: feature_extractor(random_init_encoder(encoder, seed)),
        RAW_PIXELS: RawPixels(),
    }


def evaluation_inputs(
    train: str | os.PathLike,
    test: str | os.PathLike,
    encoder: Encoder | None = None,
    baselines: bool = False,
    settings: EmbedSettings = EmbedSettings(),
    label_table: LabelTable | None = None,
    keep_unlabeled: bool = False,
) -> dict[str, tuple[Embeddings, Embeddings]]:
    """Train/test embeddings for the model and, on request, its baselines.

    Args:
        train: Embeddings file or image folder.
        test: Embeddings file or image folder.
        encoder: Needed to embed folders; for baselines of embeddings files it is otherwise
            loaded from the files' recorded ``source``.
        baselines: Add ``random_init`` and ``raw_pixels`` feature sets; their images come
            from the folders, or from the ``data_root`` recorded in embeddings files.
        settings: Embedding settings.
        label_table: Labels instead of the class folders (or the labels recorded in an
            embeddings file) of each set it names images of; images of such a set it does
            not name are unlabeled. A set it names none of keeps its own labels.
        keep_unlabeled: Keep the images without a label (the few-label evaluation searches
            them for copies of test images); by default they are left out, with a warning.

    Returns:
        ``{"model": (train, test), ["random_init": ..., "raw_pixels": ...]}``, of the
        labeled images only (a warning counts the images left out) unless
        ``keep_unlabeled``.

    Raises:
        ContrastiveError: If a folder is given without an encoder, or the baselines' images
            or architecture cannot be found.

    Warns:
        UserWarning: Once, if ``encoder`` is given but embeddings files hold features of
            another checkpoint: the model's scores are those files', not the encoder's.
    """
    if baselines and encoder is None:
        encoder = _recorded_encoder(train)
    extras: dict[str, nn.Module] = baseline_extractors(encoder, settings.seed) if baselines else {}
    train_path, test_path = Path(train).expanduser(), Path(test).expanduser()
    train_input = _open_input(train_path, "--train", encoder)
    test_input = (
        train_input
        if isinstance(train_input, ImageFolder) and same_path(train_path, test_path)
        else _open_input(test_path, "--test", encoder)
    )
    # Before any image is embedded: a test class the training set lacks used to be found
    # only after the model and its baselines had embedded both folders.
    matches = _label_matches(label_table, [(str(train), train_input), (str(test), test_input)])
    check_label_sets(
        *_labels_of(train_input, matches[0]),
        *_labels_of(test_input, matches[1]),
        f"--train {train}",
        f"--test {test}",
    )
    sets = [_feature_sets(train_input, train_path, "--train", encoder, extras, settings)]
    sets.append(
        sets[0]  # one folder given twice is embedded once
        if test_input is train_input
        else _feature_sets(test_input, test_path, "--test", encoder, extras, settings)
    )
    if encoder is not None:
        _warn_unused_encoder(encoder, [sets[0][MODEL], sets[1][MODEL]])
    # Matched once per set, on the model's features (embedding may have left out unreadable
    # images); the baselines take the same labels from it.
    models = [
        named[MODEL] if match is None else with_label_table(named[MODEL], label_table)[0]
        for named, match in zip(sets, matches, strict=True)
    ]
    sets = [
        {name: labels_like(model, embedded) for name, embedded in named.items()}
        for named, model in zip(sets, models, strict=True)
    ]
    if not keep_unlabeled:
        sets = [
            labeled_alike(named, flag)
            for named, flag in zip(sets, (f"--train {train}", f"--test {test}"), strict=True)
        ]
    return {name: (sets[0][name], sets[1][name]) for name in sets[0]}


def labels_like(reference: Embeddings, other: Embeddings) -> Embeddings:
    """``other`` with ``reference``'s labels where both embed the same images in the same
    order: baselines embedded from a folder get the labels an embeddings file records (a
    label table's, given when it was embedded), not the folder's class sub-folders."""
    if not np.array_equal(other.paths, reference.paths):
        return other
    if np.array_equal(other.labels, reference.labels) and np.array_equal(
        other.classes, reference.classes
    ):
        return other
    return replace(other, labels=reference.labels, classes=reference.classes)


def _open_input(path: Path, name: str, encoder: Encoder | None) -> ImageFolder | Embeddings:
    """The folder (scanned) or embeddings file (loaded) given as ``name``."""
    if path.is_dir():
        if encoder is None:
            raise ContrastiveError(f"{name} {path} is a folder: give --run or --checkpoint")
        return ImageFolder.scan(path)
    if not path.exists():
        raise ContrastiveError(
            f"{name} {path} not found: give a folder of class sub-folders or an embeddings .npz"
        )
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise ContrastiveError(
            f"{name} {path} is one image: give its folder of class sub-folders, or an "
            "embeddings .npz"
        )
    return load_embeddings(path)


def _labels_of(
    opened: ImageFolder | Embeddings, match: LabelMatch | None = None
) -> tuple[np.ndarray, list[str], list[str]]:
    """``(labels, classes, paths)`` of a scanned folder or a loaded embeddings file, from
    a label table's ``match`` of its images where given."""
    if isinstance(opened, ImageFolder):
        labels, classes = (match.labels, match.classes) if match else opened.labels()
        return labels, classes, opened.relative_paths()
    if match is not None:
        return match.labels, match.classes, [str(p) for p in opened.paths]
    return opened.labels, [str(c) for c in opened.classes], [str(p) for p in opened.paths]


def _label_matches(
    label_table: LabelTable | None, inputs: Sequence[tuple[str, ImageFolder | Embeddings]]
) -> list[LabelMatch | None]:
    """What ``label_table`` gives each input, or None where it names none of the input's
    images (the input keeps its class folders: a table of the training images beside a
    test folder of class sub-folders).

    Args:
        label_table: The table, or None.
        inputs: ``(name in messages, scanned folder or loaded embeddings)`` pairs.

    Raises:
        ContrastiveError: If the table names no image of any input, or none of an input
            that has no labels of its own.

    Warns:
        UserWarning: Naming rows that name no image of any input.
    """
    if label_table is None:
        return [None] * len(inputs)
    matches = []
    for name, opened in inputs:
        images = opened.paths if isinstance(opened, ImageFolder) else image_files(opened)
        root = opened.root if isinstance(opened, ImageFolder) else opened.data_root
        matches.append(match_labels(label_table, images, name, root))
    names = list(dict.fromkeys(name for name, _ in inputs))
    first = inputs[0][1]
    example = Path(str(first.paths[0])).name if len(first.paths) else "none"
    named_rows = set().union(*(match.matched_rows for match in matches))
    message = unmatched_rows(label_table, named_rows, " or ".join(names), example)
    if message:
        warnings.warn(message, stacklevel=3)
    for (name, opened), match in zip(inputs, matches, strict=True):
        labels = _labels_of(opened)[0]
        if not match.matched_rows and len(labels) and (labels < 0).all():
            raise ContrastiveError(
                f"{name} is unlabeled and {label_table.name} names none of its images (e.g. "
                f"{Path(str(opened.paths[0])).name}); give a table that names them (--labels "
                "may be given twice), or class sub-folders"
            )
    return [match if match.matched_rows else None for match in matches]


def _warn_unused_encoder(encoder: Encoder, models: list[Embeddings]) -> None:
    """Warns once when loaded features come from another checkpoint than ``encoder``: a
    report would otherwise credit the encoder with another model's scores."""
    others = {
        model.source
        for model in models
        if model.source and not same_weights_source(model.source, encoder.source)
    }
    if others:
        warnings.warn(
            f"--run/--checkpoint {encoder.source} is not used: the .npz files hold features of "
            f"{', '.join(sorted(others))}",
            stacklevel=3,
        )


def _feature_sets(
    opened: ImageFolder | Embeddings,
    path: Path,
    name: str,
    encoder: Encoder | None,
    extras: Mapping[str, nn.Module],
    settings: EmbedSettings,
) -> dict[str, Embeddings]:
    if isinstance(opened, ImageFolder):
        assert encoder is not None  # _open_input refused a folder without one
        feature = "projector" if settings.projector else "backbone"
        extractors = {MODEL: feature_extractor(encoder, settings.projector), **extras}
        sources = {
            MODEL: encoder.source,
            RANDOM_INIT: f"random init (seed {settings.seed})",
            RAW_PIXELS: "raw pixels",
        }
        embedded = _embed(opened, encoder, extractors, sources, settings)
        embedded[MODEL].feature = feature
        return embedded
    model = opened
    if not extras:
        return {MODEL: model}
    folder = model.data_root
    if folder is None or not folder.is_dir():
        raise ContrastiveError(
            f"--baselines: {path} records no existing data folder ({str(folder or '')!r}); "
            f"give the image folder as {name}"
        )
    if encoder is None:
        raise ContrastiveError("--baselines needs --run or --checkpoint")
    sources = {RANDOM_INIT: f"random init (seed {settings.seed})", RAW_PIXELS: "raw pixels"}
    return {MODEL: model, **_embed(folder, encoder, extras, sources, settings)}


def _embed(
    folder: Path | ImageFolder,
    encoder: Encoder,
    extractors: Mapping[str, nn.Module],
    sources: Mapping[str, str],
    settings: EmbedSettings,
) -> dict[str, Embeddings]:
    return embed_folder(
        folder,
        encoder.view_config,
        extractors,
        sources,
        settings.batch_size,
        settings.num_workers,
        torch.device(settings.device),
        settings.progress,
        settings.full_decode,
    )


def _recorded_encoder(train: str | os.PathLike) -> Encoder:
    """The encoder an embeddings file was made with, for its baselines' architecture."""
    path = Path(train).expanduser()
    if path.is_dir():
        raise ContrastiveError(f"--train {path} is a folder: give --run or --checkpoint")
    source = load_embeddings(path).source
    if not source or not Path(source).exists():
        raise ContrastiveError(
            f"--baselines: {path} records no existing checkpoint ({source!r}); give --run or "
            "--checkpoint"
        )
    try:
        return load_encoder(source)
    except MissingConfigurationError:
        raise ContrastiveError(
            f"--baselines: {path} was embedded from {source}, which records no architecture: "
            "give --backbone NAME and --input-size PX"
        ) from None
