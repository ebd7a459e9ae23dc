"""Argparse types shared by the commands: a bad value is refused while the command line is
read, in one line naming the flag, before any image is scanned or embedded. Also the help
formatter every command uses, which shows each option's default.

A type raises ``argparse.ArgumentTypeError``: a ``ContrastiveError`` raised while parsing
would escape the CLI's handler as a traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from contrastive.data.label_table import LabelTable, read_label_table
from contrastive.errors import ContrastiveError


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_int_list(text: str) -> list[int]:
    """Comma-separated whole numbers, each at least 1 (``--k 20,200``)."""
    try:
        values = [positive_int(part) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected integers >= 1 like 20,200, got {text!r}")
    return values


def checked_float(check: Callable[[float], None], expected: str) -> Callable[[str], float]:
    """A number that ``check`` accepts (the library's own check, which raises
    ``ContrastiveError``), so the CLI and the Python API refuse the same values.

    Args:
        check: Raises ``ContrastiveError`` for a value it refuses.
        expected: What is accepted, for the message (``"a number in (0, 1)"``).
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
            check(value)
        except (ValueError, ContrastiveError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        return value

    return parse


def label_table_file(text: str) -> LabelTable:
    """A label table (CSV of image,label rows), read while the command line is."""
    try:
        return read_label_table(text)
    except ContrastiveError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class MergeLabelTables(argparse.Action):
    """``--labels`` given again adds its rows (a table of the training images and one of the
    test images), where argparse would keep the last table only."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        earlier = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, values if earlier is None else earlier.merged(values))


def add_labels_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--labels FILE`` (embed, eval, curate): a label table instead of class sub-folders;
    ``note`` ends the help with what the command does with it beyond that."""
    parser.add_argument(
        "--labels",
        type=label_table_file,
        action=MergeLabelTables,
        metavar="FILE",
        help="CSV (or TSV) of image,label rows giving the labels instead of class sub-folders: "
        "images by path relative to the folder, file name or stem, with a header such as "
        "path,label (or two columns); images it does not name are unlabeled; given twice, "
        f"both tables count{note}",
    )


def output_file(text: str) -> Path:
    """A file to write, refused where a folder stands or the place cannot be written (the
    write comes after all the work)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name")
    _check_writable_place(path, path.parent)
    return path


def output_folder(text: str) -> Path:
    """A folder to write into, refused where a file stands or the place cannot be written."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; give a folder")
    _check_writable_place(path, path)
    return path


def _check_writable_place(path: Path, folder: Path) -> None:
    """Refuses ``path`` when the nearest existing folder at or above ``folder`` cannot be
    written into (read-only file system, no permission); folders missing on the way are
    created at write time."""
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {path}: {folder} is not writable")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help where a default is set and not yet said.

    Unlike argparse's ``ArgumentDefaultsHelpFormatter`` it leaves out ``None`` and
    ``False`` (an unset option, an off switch), which say nothing to a reader, and writes
    a list as it is typed (``20,200``).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
        ):
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(map(str, default))
        # argparse applies %-formatting to help strings.
        return f"{text} (default: {str(default).replace('%', '%%')})"


def add_run_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The run as ``RUN`` or as ``--run RUN``, the way embed, eval and curate name it;
    :func:`given_run` reads it."""
    parser.add_argument("run", type=Path, nargs="?", help=f"{help_text}; or --run RUN")
    parser.add_argument("--run", type=Path, dest="run_option", help="the same as RUN")


def given_run(args: argparse.Namespace) -> Path:
    """The run of :func:`add_run_argument`.

    Raises:
        ContrastiveError: If none or two different ones are given.
    """
    if args.run is None and args.run_option is None:
        raise ContrastiveError(f"{args.command} needs a run: contrastive {args.command} RUN")
    if args.run is not None and args.run_option is not None and args.run != args.run_option:
        raise ContrastiveError(f"two runs given: {args.run} and --run {args.run_option}")
    return args.run if args.run is not None else args.run_option
