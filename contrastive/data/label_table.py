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
  path, or one relative to a parent folder: ``train/cat/1.jpg``), by its file name alone or
  by its stem (Kaggle's ``id`` columns); where none fits exactly, the same without letter
  case (``IMG_1.JPG``). An absolute path written on another machine names the image whose
  path below the folder, after the folder's own name, ends it. A name that fits two images
  of the folder is refused with both named.
* Class names are the label cells as written (Unicode-normalised); numeric labels sort as
  numbers (``2`` before ``10``). An empty label cell leaves its image unlabeled, and names
  that differ only in case ("Cat", "cat") are two classes: both are warned about.
* Spreadsheet workbooks (``.xlsx``, ``.ods``) are refused with the way to export them; two
  tables (``--labels`` given twice) merge into one (:meth:`LabelTable.merged`).
"""

from __future__ import annotations

import csv
import os
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from contrastive.data.image_files import IMAGE_EXTENSIONS
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
    "photo",
    "picture",
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
    "organism",
    "taxon",
    "breed",
    "type",
    "diagnosis",
    "annotation",
    "ground_truth",
    "y",
)
_DELIMITERS = ",\t;|"
# Workbook files (Excel, LibreOffice, Numbers) hold zipped or binary sheets, not rows of text.
_WORKBOOKS = frozenset({".xlsx", ".xlsm", ".xls", ".ods", ".numbers"})
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
        source: The file it was read from.
    """

    line: int
    image: str
    label: str
    source: Path = Path()

    def where(self) -> str:
        """``labels.csv line 12``, for messages."""
        return f"{self.source.name} line {self.line}"


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
            f"{self.name} ({len(self.rows):,} rows; images in {self.columns[0]}, "
            f"labels in {self.columns[1]})"
        )

    @property
    def name(self) -> str:
        """The file's name, or the files' (``train.csv + test.csv``) of merged tables."""
        names = dict.fromkeys(row.source.name for row in self.rows)
        return " + ".join(names) if len(names) > 1 else self.source.name

    def merged(self, other: LabelTable) -> LabelTable:
        """One table of this one's rows and then ``other``'s (``--labels`` given twice: a
        table of the training images and one of the test images)."""
        columns = self.columns if self.columns == other.columns else ("their columns",) * 2
        return LabelTable(self.source, [*self.rows, *other.rows], columns)


@dataclass
class LabelMatch:
    """Labels a table gives to a list of images.

    Attributes:
        labels: ``(N,)`` int64 indices into ``classes``; -1 for images the table does not
            label.
        classes: The class names, sorted (numerically where every name is a number).
        matched_rows: Indices into the table's ``rows`` of those that named an image.
    """

    labels: np.ndarray
    classes: list[str]
    matched_rows: set[int] = field(default_factory=set)


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
    if source.suffix.lower() in _WORKBOOKS or _starts_with(
        source, (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
    ):
        raise ContrastiveError(
            f"label table {source} is a spreadsheet workbook, not text: export the sheet as CSV "
            "(File > Save as > CSV) and give that file"
        )
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
            label = unicodedata.normalize("NFC", row[label_column])
            rows.append(LabelRow(number, row[image_column], label, source))
    if not rows:
        raise ContrastiveError(f"label table {source} has a header but no rows")
    _warn_about_labels(rows, source)
    return LabelTable(source, rows, columns)


def _warn_about_labels(rows: Sequence[LabelRow], source: Path) -> None:
    """Warns about empty labels and class names that differ only in case ("Cat", "cat"):
    each spelling is a class of its own, which halved one table's kNN accuracy unnoticed."""
    empty = [row.line for row in rows if not row.label]
    if empty:
        shown = ", ".join(map(str, empty[:_EXAMPLES_SHOWN])) + (" ..." if len(empty) > 3 else "")
        warnings.warn(
            f"{source}: {len(empty):,} row(s) with an empty label (line {shown}) leave their "
            "images unlabeled",
            stacklevel=3,
        )
    spellings: dict[str, Counter] = {}
    for row in rows:
        if row.label:
            spellings.setdefault(row.label.casefold(), Counter())[row.label] += 1
    alike = [counts for counts in spellings.values() if len(counts) > 1]
    if alike:
        shown = "; ".join(
            " and ".join(f"{name!r} ({count} rows)" for name, count in counts.most_common())
            for counts in alike[:_EXAMPLES_SHOWN]
        )
        warnings.warn(
            f"{source}: class names that differ only in case are different classes: {shown}; "
            "write each class one way if they are one",
            stacklevel=3,
        )


def _starts_with(path: Path, signatures: tuple[bytes, ...]) -> bool:
    """Whether the file begins with one of ``signatures`` (False if it cannot be read: the
    read that follows says why)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(8).startswith(signatures)
    except OSError:
        return False


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


def is_table_header(line: str) -> bool:
    """Whether a text line reads as a label table's header (``filename,species``): two
    columns or more, one of them a known image or label column name."""
    cells = next(csv.reader([line]), [])
    names = [cell.strip().casefold() for cell in cells]
    return len(names) > 1 and (
        _first_known(names, PATH_COLUMNS) is not None
        or _first_known(names, LABEL_COLUMNS) is not None
    )


def _first_known(names: Sequence[str], known: Sequence[str]) -> int | None:
    for candidate in known:
        if candidate in names:
            return names.index(candidate)
    return None


def match_labels(
    table: LabelTable, images: Sequence[Path], where: str, root: Path | None = None
) -> LabelMatch:
    """The labels ``table`` gives to ``images``.

    Args:
        table: A read label table.
        images: Absolute image paths.
        where: The images' folder (or file) as named in messages.
        root: The folder ``images`` lie in: an absolute path written on another machine
            (``/home/bio/photos/img_1.jpg``) names the image whose path below ``root``,
            with ``root``'s own name before it, ends it.

    Returns:
        The labels, classes and which rows named an image.

    Raises:
        ContrastiveError: If a row's name fits two images, or two rows give one image
            different labels.
    """
    names = _NameIndex(images)
    given: dict[int, tuple[int, LabelRow]] = {}
    matched: set[int] = set()
    for position, row in enumerate(table.rows):
        parts = [part for part in row.image.replace("\\", "/").split("/") if part not in ("", ".")]
        if not parts:
            continue
        hits = names.find(parts, _is_absolute(row.image), root)
        if len(hits) > 1:
            shown = ", ".join(str(images[i]) for i in hits[:_EXAMPLES_SHOWN])
            raise ContrastiveError(
                f"{row.source} line {row.line}: {row.image!r} fits {len(hits)} images of "
                f"{where} ({shown}): "
                f"write the image's path relative to {where}"
            )
        if not hits:
            continue
        matched.add(position)
        earlier = given.get(hits[0])
        if earlier is not None and earlier[1].label != row.label:
            first = earlier[1]
            lines = (
                f"{row.source} lines {first.line} and {row.line}"
                if first.source == row.source
                else f"{first.where()} and {row.where()}"
            )
            raise ContrastiveError(
                f"{lines} give {images[hits[0]]} two labels ({first.label!r}, {row.label!r})"
            )
        given[hits[0]] = (position, row)
    classes = sorted({row.label for _, row in given.values() if row.label}, key=_class_order)
    index = {name: i for i, name in enumerate(classes)}
    labels = np.full(len(images), -1, dtype=np.int64)
    for image, (_, row) in given.items():
        labels[image] = index.get(row.label, -1)
    return LabelMatch(labels, classes, matched)


def unmatched_rows(
    table: LabelTable, matched_rows: set[int], where: str, example_image: str
) -> str | None:
    """A warning naming the rows of ``table`` that named no image (None if all did).

    Args:
        table: The table.
        matched_rows: Indices of the rows that named an image (over every folder the table
            labelled).
        where: The folder(s) searched, as named in messages.
        example_image: One image's name there, for the error.

    Raises:
        ContrastiveError: If no row named an image: an example of each side, since the
            names are then written another way (ids, another folder's paths).
    """
    if not matched_rows:
        raise ContrastiveError(
            f"no row of {table.name} names an image of {where}: its first row names "
            f"{table.rows[0].image!r} (in {table.columns[0]}), the folder holds e.g. "
            f"{example_image!r}; name images by their path relative to the folder or their "
            "file name"
        )
    missing = [row for position, row in enumerate(table.rows) if position not in matched_rows]
    if not missing:
        return None
    merged = len({row.source for row in table.rows}) > 1
    shown = ", ".join(
        f"{row.image!r} ({row.where() if merged else f'line {row.line}'})"
        for row in missing[:_EXAMPLES_SHOWN]
    )
    more = len(missing) - _EXAMPLES_SHOWN
    return (
        f"{len(missing):,} of the {len(table.rows):,} rows of {table.name} name no image of "
        f"{where}: {shown}" + (f" and {more:,} more" if more > 0 else "")
    )


class _NameIndex:
    """The images by file name and by stem, exactly and case-folded."""

    def __init__(self, images: Sequence[Path]) -> None:
        self.images = images
        self.exact: dict[str, list[int]] = {}
        self.folded: dict[str, list[int]] = {}
        for index, image in enumerate(images):
            for key in {image.name, image.stem}:
                self.exact.setdefault(key, []).append(index)
                self.folded.setdefault(key.casefold(), []).append(index)

    def find(self, parts: Sequence[str], absolute: bool, root: Path | None) -> list[int]:
        """The images a row's path ``parts`` names: its path ending in them, else (an
        absolute path of another machine) them ending in the image's path below ``root``,
        else the same compared without case (``IMG_1.JPG`` for ``img_1.jpg``)."""
        last = parts[-1]
        named = sorted(set(self.exact.get(last, [])))
        hits = [i for i in named if _ends_with(self.images[i], parts)]
        if not hits and absolute and root is not None:
            hits = [i for i in named if _written_elsewhere(self.images[i], parts, root)]
        if not hits:
            folded = [part.casefold() for part in parts]
            candidates = sorted(set(self.folded.get(last.casefold(), [])))
            hits = [i for i in candidates if _ends_with(self.images[i], folded, casefold=True)]
        return hits


def _is_absolute(text: str) -> bool:
    """A POSIX, Windows drive or network path (``/home/...``, ``C:\\...``, ``\\\\server``)."""
    return text.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:[\\/]", text))


def _ends_with(image: Path, parts: Sequence[str], casefold: bool = False) -> bool:
    """Whether ``image``'s path ends in ``parts`` (the last compared with or without its
    extension)."""
    own = [part.casefold() for part in image.parts] if casefold else list(image.parts)
    name, stem = (
        (image.name.casefold(), image.stem.casefold()) if casefold else (image.name, image.stem)
    )
    folders, last = list(parts[:-1]), parts[-1]
    if last not in (name, stem):
        return False
    above = own[:-1]
    return len(above) >= len(folders) and above[len(above) - len(folders) :] == folders


def _written_elsewhere(image: Path, parts: Sequence[str], root: Path) -> bool:
    """Whether ``parts`` (an absolute path of another machine) end in ``root``'s name and
    ``image``'s path below ``root``: a table's test row never labels a training image of
    the same name below another folder."""
    try:
        below = image.relative_to(root).parts
    except ValueError:
        return False
    tail = [root.name, *below[:-1]]
    folders, last = list(parts[:-1]), parts[-1]
    return (
        last in (image.name, image.stem)
        and len(folders) >= len(tail)
        and folders[len(folders) - len(tail) :] == tail
    )


def _class_order(name: str) -> tuple[int, float, str]:
    if _NUMBER.fullmatch(name):
        return (0, float(name), name)
    return (1, 0.0, name)
