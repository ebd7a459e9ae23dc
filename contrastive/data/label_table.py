"""Labels from a table (CSV or TSV: one image and its class per row) instead of class folders.

Labels often come as a spreadsheet, not as sub-folders: a Kaggle ``train.csv`` (``id,label``),
STL-10's ``train_data.csv`` (``label,name``), or the images a user labelled after
``contrastive curate --select``. A table gives labels to the images it names; every other
image of the folder stays unlabeled.

How a table is read:

* The delimiter is sniffed among comma, tab, semicolon and ``|``.
* A first row holding a known column name (``path``, ``file``, ``name``, ``id``, ... for
  the image; ``label``, ``class``, ``category``, ``target``, ... for its class) is a
  header; it picks the two columns and others are ignored. Without one, the table must have
  exactly two columns, and the image column is the one whose values end in an image
  extension (the first where neither or both do).
* An image is named by its path relative to the folder, by a path ending in it (an absolute
  path, or one relative to a parent folder: ``train/cat/1.jpg``), by its file name alone or,
  where the name has no image extension, by its stem (Kaggle's ``id`` columns). A name that
  fits two images of the folder is refused with both named.
* Class names are the label cells as written; numeric labels sort as numbers (``2`` before
  ``10``). An empty label cell leaves its image unlabeled.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from contrastive.data.folder import IMAGE_EXTENSIONS
from contrastive.errors import ContrastiveError

#: Header names (compared case-insensitively) of the column naming the image.
PATH_COLUMNS = (
    "path",
    "image_path",
    "filepath",
    "file_path",
    "file",
    "filename",
    "file_name",
    "fname",
    "image",
    "image_name",
    "image_id",
    "img",
    "name",
    "id",
)
#: Header names of the column holding the class.
LABEL_COLUMNS = (
    "label",
    "labels",
    "class",
    "class_name",
    "classname",
    "category",
    "target",
    "species",
    "y",
)
_DELIMITERS = ",\t;|"
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
# How many unmatched rows a message names before "and N more".
_EXAMPLES_SHOWN = 3


@dataclass(frozen=True)
class LabelRow:
    """One row of a label table.

    Attributes:
        line: The row's line number in the file (1-based, the header counted).
        image: How the row names its image (a path, a file name or a stem).
        label: The class name; "" leaves the image unlabeled.
    """

    line: int
    image: str
    label: str


@dataclass
class LabelTable:
    """The rows of a label table file.

    Attributes:
        source: The file read.
        rows: Its data rows.
        columns: Where the images and the labels were read, for messages: header names
            quoted (``"'name'"``) or positions (``"column 1"``) in a table without a header.
    """

    source: Path
    rows: list[LabelRow]
    columns: tuple[str, str]

    def describe(self) -> str:
        """``labels.csv (5,000 rows; images in 'name', labels in 'label')``."""
        return (
            f"{self.source.name} ({len(self.rows):,} rows; images in {self.columns[0]}, "
            f"labels in {self.columns[1]})"
        )


@dataclass
class LabelMatch:
    """Labels a table gives to a list of images.

    Attributes:
        labels: ``(N,)`` int64 indices into ``classes``; -1 for images the table does not
            label.
        classes: The class names, sorted (numerically where every name is a number).
        matched_lines: Line numbers of the rows that named one of the images.
    """

    labels: np.ndarray
    classes: list[str]
    matched_lines: set[int] = field(default_factory=set)


def read_label_table(path: str | os.PathLike) -> LabelTable:
    """Reads a label table (see the module docstring for the format).

    Args:
        path: A CSV or TSV file.

    Returns:
        Its rows, with the columns it read them from.

    Raises:
        ContrastiveError: If the file cannot be read, holds no rows, or its columns cannot
            be told apart; the message names the file.
    """
    source = Path(path).expanduser()
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ContrastiveError(f"label table {source} not found") from None
    except IsADirectoryError:
        raise ContrastiveError(
            f"label table {source} is a folder: give a CSV file of image,label rows "
            "(class sub-folders give labels without a table)"
        ) from None
    except UnicodeDecodeError:
        raise ContrastiveError(
            f"label table {source} is not UTF-8 text: give a CSV file of image,label rows"
        ) from None
    except OSError as error:
        raise ContrastiveError(f"label table {source} cannot be read: {error}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ContrastiveError(f"label table {source} is empty: give image,label rows")
    try:
        delimiter = csv.Sniffer().sniff("\n".join(lines[:50]), _DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    cells = [[cell.strip() for cell in row] for row in csv.reader(lines, delimiter=delimiter)]
    line_numbers = [n for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    image_column, label_column, columns, header = _columns(cells, source)
    rows = []
    for number, row in zip(line_numbers[header:], cells[header:], strict=True):
        if len(row) <= max(image_column, label_column):
            raise ContrastiveError(
                f"label table {source} line {number} has {len(row)} column(s), "
                f"expected at least {max(image_column, label_column) + 1}: {','.join(row)!r}"
            )
        if row[image_column]:
            rows.append(LabelRow(number, row[image_column], row[label_column]))
    if not rows:
        raise ContrastiveError(f"label table {source} has a header but no rows")
    return LabelTable(source, rows, columns)


def _columns(cells: list[list[str]], source: Path) -> tuple[int, int, tuple[str, str], bool]:
    """``(image column, label column, their names, whether the first row is a header)``."""
    names = [cell.casefold() for cell in cells[0]]
    image = _first_known(names, PATH_COLUMNS)
    label = _first_known(names, LABEL_COLUMNS)
    if image is not None or label is not None:
        if (image is None or label is None) and len(names) == 2:
            image = 1 - label if image is None else image
            label = 1 - image if label is None else label
        if image is None or label is None:
            missing = "image" if image is None else "label"
            known = PATH_COLUMNS if image is None else LABEL_COLUMNS
            raise ContrastiveError(
                f"label table {source} has columns {', '.join(cells[0])}: none is the "
                f"{missing} column (name it one of {', '.join(known[:6])} ...)"
            )
        return image, label, (repr(cells[0][image]), repr(cells[0][label])), True
    widths = {len(row) for row in cells}
    if widths != {2}:
        raise ContrastiveError(
            f"label table {source} has no header and {max(widths)} columns: keep two columns "
            "(image, label) or add a header naming them (e.g. path,label)"
        )
    looks_like_image = [
        sum(PurePosixPath(row[column]).suffix.lower() in IMAGE_EXTENSIONS for row in cells)
        for column in (0, 1)
    ]
    image = 1 if looks_like_image[1] > looks_like_image[0] else 0
    return image, 1 - image, (f"column {image + 1}", f"column {2 - image}"), False


def _first_known(names: Sequence[str], known: Sequence[str]) -> int | None:
    for candidate in known:
        if candidate in names:
            return names.index(candidate)
    return None


def match_labels(table: LabelTable, images: Sequence[Path], where: str) -> LabelMatch:
    """The labels ``table`` gives to ``images``.

    Args:
        table: A read label table.
        images: Absolute image paths.
        where: The images' folder (or file) as named in messages.

    Returns:
        The labels, classes and which rows named an image.

    Raises:
        ContrastiveError: If a row's name fits two images, or two rows give one image
            different labels.
    """
    by_name: dict[str, list[int]] = {}
    by_stem: dict[str, list[int]] = {}
    for index, image in enumerate(images):
        by_name.setdefault(image.name, []).append(index)
        by_stem.setdefault(image.stem, []).append(index)
    given: dict[int, LabelRow] = {}
    matched: set[int] = set()
    for row in table.rows:
        parts = [part for part in row.image.replace("\\", "/").split("/") if part not in ("", ".")]
        if not parts:
            continue
        hits = [i for i in _candidates(parts[-1], by_name, by_stem) if _ends_with(images[i], parts)]
        if len(hits) > 1:
            shown = ", ".join(str(images[i]) for i in hits[:_EXAMPLES_SHOWN])
            raise ContrastiveError(
                f"{table.source} line {row.line}: {row.image!r} fits {len(hits)} images of "
                f"{where} ({shown}): write the image's path relative to {where}"
            )
        if not hits:
            continue
        matched.add(row.line)
        earlier = given.get(hits[0])
        if earlier is not None and earlier.label != row.label:
            raise ContrastiveError(
                f"{table.source} lines {earlier.line} and {row.line} give {images[hits[0]]} "
                f"two labels ({earlier.label!r}, {row.label!r})"
            )
        given[hits[0]] = row
    classes = sorted({row.label for row in given.values() if row.label}, key=_class_order)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.full(len(images), -1, dtype=np.int64)
    for image, row in given.items():
        labels[image] = index.get(row.label, -1)
    return LabelMatch(labels, classes, matched)


def unmatched_rows(
    table: LabelTable, matched_lines: set[int], where: str, example_image: str
) -> str | None:
    """A warning naming the rows of ``table`` that named no image (None if all did).

    Args:
        table: The table.
        matched_lines: Lines that named an image (over every folder the table labelled).
        where: The folder(s) searched, as named in messages.
        example_image: One image's name there, for the error.

    Raises:
        ContrastiveError: If no row named an image: an example of each side, since the
            names are then written another way (ids, another folder's paths).
    """
    if not matched_lines:
        raise ContrastiveError(
            f"no row of {table.source} names an image of {where}: its first row names "
            f"{table.rows[0].image!r} (in {table.columns[0]}), the folder holds e.g. "
            f"{example_image!r}; name images by their path relative to the folder or their "
            "file name"
        )
    missing = [row for row in table.rows if row.line not in matched_lines]
    if not missing:
        return None
    shown = ", ".join(f"{row.image!r} (line {row.line})" for row in missing[:_EXAMPLES_SHOWN])
    more = len(missing) - _EXAMPLES_SHOWN
    return (
        f"{len(missing):,} of the {len(table.rows):,} rows of {table.source} name no image of "
        f"{where}: {shown}" + (f" and {more:,} more" if more > 0 else "")
    )


def _candidates(
    last: str, by_name: dict[str, list[int]], by_stem: dict[str, list[int]]
) -> list[int]:
    if PurePosixPath(last).suffix.lower() in IMAGE_EXTENSIONS:
        return by_name.get(last, [])
    # Kaggle-style ids name images without their extension; a name like "img.v2" may too.
    return sorted(set(by_name.get(last, [])) | set(by_stem.get(last, [])))


def _ends_with(image: Path, parts: Sequence[str]) -> bool:
    """Whether ``image``'s path ends in ``parts`` (the last compared with or without its
    extension)."""
    folders, last = parts[:-1], parts[-1]
    if last not in (image.name, image.stem):
        return False
    if not folders:
        return True
    above = image.parent.parts
    return len(above) >= len(folders) and list(above[len(above) - len(folders) :]) == folders


def _class_order(name: str) -> tuple[int, float, str]:
    if _NUMBER.fullmatch(name):
        return (0, float(name), name)
    return (1, 0.0, name)
