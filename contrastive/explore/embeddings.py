"""Embedding files: the ``.npz`` written by ``contrastive embed``, loaded and checked.

The file holds ``embeddings`` (float32, N x D), ``paths`` (str, relative to a data folder),
``labels`` (int64, -1 when unlabeled), ``classes`` (str) and optionally ``data_root`` (a str
scalar): the folder the paths are relative to, used here only to find thumbnails.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contrastive.errors import ContrastiveError

UNLABELED = -1


@dataclass
class EmbeddingSet:
    """Embeddings with the images they came from.

    Attributes:
        embeddings: ``(N, D)`` float32 embeddings.
        paths: ``N`` image paths, relative to ``data_root`` (absolute paths also work).
        labels: ``(N,)`` int64 indices into ``classes``; ``-1`` for unlabeled images.
        classes: Class names.
        data_root: Folder the paths are relative to, or None when images are unavailable.
    """

    embeddings: np.ndarray
    paths: list[str]
    labels: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    data_root: Path | None = None

    def __post_init__(self) -> None:
        self.embeddings = _check_embeddings(self.embeddings)
        count = len(self.embeddings)
        self.paths = [str(p) for p in np.asarray(self.paths, dtype=str).reshape(-1)]
        if len(self.paths) != count:
            raise ContrastiveError(
                f"paths has {len(self.paths)} entries but embeddings has {count} rows"
            )
        self.classes = [str(c) for c in np.asarray(self.classes, dtype=str).reshape(-1)]
        self.labels = _check_labels(self.labels, count, len(self.classes))
        if self.data_root is not None:
            self.data_root = Path(self.data_root).expanduser()

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def is_labeled(self) -> bool:
        """True when at least one image has a class label."""
        return bool(np.any(self.labels >= 0))

    def image_path(self, index: int) -> Path:
        """The file of image ``index``, resolved against ``data_root``.

        Raises:
            ContrastiveError: If the path is relative and no ``data_root`` is known.
        """
        path = Path(self.paths[index])
        if path.is_absolute():
            return path
        if self.data_root is None:
            raise ContrastiveError(
                f"cannot find image {path}: no data_root known; pass data_root= to load_embeddings"
            )
        return self.data_root / path

    def label_name(self, index: int) -> str:
        """The class name of image ``index``, or ``"unlabeled"``."""
        label = int(self.labels[index])
        return self.classes[label] if label >= 0 else "unlabeled"


def load_embeddings(
    path_or_npz: str | os.PathLike | Mapping[str, Any] | Any,
    data_root: str | os.PathLike | None = None,
) -> EmbeddingSet:
    """Loads and checks an embeddings file.

    Args:
        path_or_npz: An ``.npz`` file, an already loaded mapping (``np.load`` result,
            dict) with the same keys, or a dataclass with those fields (such as
            :class:`contrastive.embeddings.Embeddings`).
        data_root: Folder the image paths are relative to. Overrides a ``data_root`` stored
            in the file; without either, plots that need images raise a clear error.

    Returns:
        The checked :class:`EmbeddingSet`.

    Raises:
        ContrastiveError: If the file is missing, unreadable, lacks ``embeddings`` or
            ``paths``, or its arrays disagree in length; or if ``data_root`` is given but
            is not a folder.
    """
    if isinstance(path_or_npz, Mapping):
        return _from_mapping(path_or_npz, "the given arrays", data_root)
    if is_dataclass(path_or_npz) and not isinstance(path_or_npz, type):
        # e.g. contrastive.embeddings.Embeddings, straight from embed_folder().
        arrays = {item.name: getattr(path_or_npz, item.name) for item in fields(path_or_npz)}
        return _from_mapping(arrays, type(path_or_npz).__name__, data_root)
    file = Path(path_or_npz).expanduser()
    if not file.is_file():
        raise ContrastiveError(f"embeddings file not found: {file}")
    try:
        with np.load(file, allow_pickle=False) as npz:
            return _from_mapping(npz, str(file), data_root)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        # allow_pickle=False also lands here: object arrays could run code when loaded.
        raise ContrastiveError(f"cannot read embeddings file {file}: {error}") from error


def _from_mapping(
    arrays: Mapping[str, Any], source: str, data_root: str | os.PathLike | None
) -> EmbeddingSet:
    for key in ("embeddings", "paths"):
        if key not in arrays:
            raise ContrastiveError(f"{source} has no '{key}' array")
    root = _resolve_root(arrays, source, data_root)
    try:
        return EmbeddingSet(
            embeddings=np.asarray(arrays["embeddings"]),
            paths=list(np.asarray(arrays["paths"], dtype=str).reshape(-1)),
            labels=np.asarray(arrays["labels"]) if "labels" in arrays else None,
            classes=list(np.asarray(arrays["classes"], dtype=str).reshape(-1))
            if "classes" in arrays
            else [],
            data_root=root,
        )
    except ContrastiveError as error:
        raise ContrastiveError(f"{source}: {error}") from error


def _resolve_root(
    arrays: Mapping[str, Any], source: str, data_root: str | os.PathLike | None
) -> Path | None:
    if data_root is not None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise ContrastiveError(f"data_root is not a folder: {root}")
        return root
    if "data_root" not in arrays:
        return None
    stored = (
        str(np.asarray(arrays["data_root"]).reshape(-1)[0]) if np.size(arrays["data_root"]) else ""
    )
    if not stored:
        return None
    root = Path(stored).expanduser()
    if not root.is_dir():
        # Embeddings are often moved between machines: numbers still work, images don't.
        warnings.warn(
            f"data_root stored in {source} is not a folder here: {root}; pass "
            "data_root= to load_embeddings to show images",
            stacklevel=3,
        )
    return root


def _check_embeddings(embeddings: Any) -> np.ndarray:
    array = np.asarray(embeddings)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ContrastiveError(
            f"embeddings must be a non-empty N x D array, got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ContrastiveError(f"embeddings must be real numbers, got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if len(bad_rows):
        raise ContrastiveError(
            f"embeddings contain NaN or inf in {len(bad_rows)} row(s), first row {bad_rows[0]}"
        )
    return array


def _check_labels(labels: Any, count: int, num_classes: int) -> np.ndarray:
    if labels is None:
        return np.full(count, UNLABELED, dtype=np.int64)
    array = np.asarray(labels).reshape(-1) if np.ndim(labels) else np.asarray(labels)
    if array.shape != (count,):
        raise ContrastiveError(f"labels has shape {array.shape}, expected ({count},)")
    if not np.issubdtype(array.dtype, np.integer):
        raise ContrastiveError(f"labels must be integers, got dtype {array.dtype}")
    out_of_range = (array < UNLABELED) | (array >= num_classes)
    if out_of_range.any():
        first = int(np.flatnonzero(out_of_range)[0])
        raise ContrastiveError(
            f"label {int(array[first])} of row {first} is not -1 or a "
            f"class index below {num_classes}"
        )
    return array.astype(np.int64, copy=False)
