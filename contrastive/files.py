"""Safe file writing and loading: atomic replace, and torch loading without code execution.

Every artefact (checkpoints, weights, embeddings, reports) is written to a temporary file in
the same folder and renamed over the target, so a kill during a save never leaves a corrupt
file where the previous good one was. A kill can leave the hidden temporary file
(``.NAME.*.tmp``) behind; the target itself is always either the old or the new version.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastive.errors import ContrastiveError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


@functools.cache
def _file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` would give a new file.

    ``mkstemp`` creates files readable by the owner only; artefacts get the usual
    permissions. Linux reports the umask in ``/proc``; elsewhere it can only be read by
    setting it, which is done once, on the first write rather than at import.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``target``; renames it over ``target`` on success.

    On an exception the temporary file is removed and ``target`` is left untouched.

    Raises:
        ContrastiveError: If the folder of ``target`` cannot be created or written.
    """
    target_path = Path(target)
    try:
        target_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ContrastiveError(
            f"cannot create folder {target_path.parent}: {error.strerror or error}"
        ) from error
    try:
        handle, temporary = tempfile.mkstemp(
            prefix=f".{target_path.name}.", suffix=".tmp", dir=target_path.parent
        )
    except OSError as error:
        raise ContrastiveError(f"cannot write {target_path}: {error.strerror or error}") from error
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.chmod(temporary_path, _file_mode())
        with open(temporary_path, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary_path, target_path)
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise
    _fsync_directory(target_path.parent)


def same_path(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Whether two recorded paths name the same place (one relative, one absolute, ``~``)."""
    if os.fspath(first) == os.fspath(second):
        return True
    try:
        return Path(first).expanduser().resolve() == Path(second).expanduser().resolve()
    except OSError:
        return False


def refuse_output_inside(
    output: str | os.PathLike | None,
    folder: str | os.PathLike | None,
    output_name: str,
    folder_name: str,
) -> None:
    """Refuses an output folder inside an image folder: its plots and contact sheets would be
    scanned as images (a new class) the next time the folder is trained on or embedded.

    Args:
        output: The folder to be written (None: nothing to check).
        folder: An image folder (None: nothing to check).
        output_name: How to name the output in the message (its flag).
        folder_name: How to name the image folder (its flag).

    Raises:
        ContrastiveError: If ``output`` is ``folder`` or lies inside it.
    """
    if output is None or folder is None:
        return
    if Path(output).resolve().is_relative_to(Path(folder).resolve()):
        raise ContrastiveError(
            f"{output_name} {output} is inside {folder_name} {folder}: the next scan would take "
            "the report's images for data; choose a folder outside it"
        )


def _fsync_directory(folder: Path) -> None:
    """Makes a rename in ``folder`` durable across a power loss, where the OS allows it."""
    # Windows and some network file systems cannot open or sync folders; the rename has
    # still happened, only its durability is not guaranteed there.
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``target`` atomically, as UTF-8.

    File names that are not valid UTF-8 reach Python as lone surrogates; they are written
    back as their original bytes rather than failing the write.
    """
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8", errors="surrogateescape")


def save_torch_atomic(obj: Any, target: str | os.PathLike) -> None:
    """``torch.save`` to ``target`` atomically."""
    import torch  # here, not above: the other helpers serve commands without torch

    with atomic_path(target) as temporary:
        torch.save(obj, temporary)


def load_torch_safely(path: str | os.PathLike) -> Any:
    """``torch.load`` with ``weights_only=True`` onto the CPU, with clear errors.

    Raises:
        ContrastiveError: If the file is missing, not a torch file, or holds objects other
            than tensors and plain containers (a pickle that could run code is refused).
    """
    import torch

    file = Path(path)
    if not file.exists():
        raise ContrastiveError(f"file not found: {file}")
    if not file.is_file():
        raise ContrastiveError(f"not a file: {file}")
    export = _deployed_model_kind(file)
    if export is not None:
        raise ContrastiveError(
            f"{file} is {export} (what contrastive export writes for a service), not weights "
            "to load: give the run folder, its .ckpt or its backbone.pt"
        )
    try:
        with warnings.catch_warnings():
            # Foreign pickles trigger a note about their protocol; the error below says more.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(file, map_location="cpu", weights_only=True)
    # A damaged or foreign file makes torch raise almost anything (IndexError, EOFError,
    # RuntimeError, UnpicklingError, ...); all of them mean "cannot load this file".
    except Exception as error:  # noqa: BLE001
        refused_global = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if refused_global:
            raise ContrastiveError(
                f"refusing to load {file}: it references {refused_global.group(1)}, which "
                f"could run code; only tensors and plain data are loaded (weights_only=True)"
            ) from error
        raise ContrastiveError(f"cannot read {file} as a torch file: {_summary(error)}") from error


def _deployed_model_kind(file: Path) -> str | None:
    """``"an ONNX model"`` / ``"a TorchScript model"`` for such files, else None."""
    if file.suffix.lower() == ".onnx":
        return "an ONNX model"
    if zipfile.is_zipfile(file):
        with contextlib.suppress(OSError, zipfile.BadZipFile), zipfile.ZipFile(file) as archive:
            # torch.jit.save writes code/ and constants.pkl; torch.save writes neither.
            if any(name.endswith("/constants.pkl") for name in archive.namelist()):
                return "a TorchScript model"
    return None


def _summary(error: Exception) -> str:
    """The informative part of a torch loading error, on one line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    # weights_only failures bury the cause under generic advice about trusting the source.
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", text, re.DOTALL)
    if detail:
        text = detail.group(1)
    text = " ".join(text.split())
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check_writable_dir(path: str | os.PathLike, min_free_bytes: int = 0) -> int:
    """Creates ``path`` if needed and checks a file can be written there.

    Meant to run before training, so a bad output folder fails in seconds, not after the
    first epoch.

    Args:
        path: Output folder.
        min_free_bytes: Fail if the file system holding ``path`` has less free space.

    Returns:
        The free space, in bytes, on the file system holding ``path``.

    Raises:
        ContrastiveError: If the folder cannot be created or written, or has less than
            ``min_free_bytes`` free.
    """
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ContrastiveError(f"output path is a file, not a folder: {folder}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ContrastiveError(
            f"cannot create output folder {folder}: {error.strerror or error}"
        ) from error
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".write-test.") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as error:
        raise ContrastiveError(
            f"cannot write to output folder {folder}: {error.strerror or error}"
        ) from error
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise ContrastiveError(
            f"only {gigabytes(free)} free on the disk holding {folder}, "
            f"need at least {gigabytes(min_free_bytes)}"
        )
    log.info("output folder %s: %s free", folder, gigabytes(free))
    return free


def disk_size(size: int) -> str:
    """A byte count as ``340 MB`` below a gigabyte, else as ``1.23 GB`` (decimal units)."""
    return f"{size / 1e6:.0f} MB" if size < 1e9 else gigabytes(size)


def gigabytes(size: int) -> str:
    """A byte count as ``1.23 GB`` (decimal, as disk sizes are sold and ``df -H`` shows)."""
    return f"{size / 1e9:.2f} GB"


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Saves a figure atomically; the format follows the file extension.

    Raises:
        ContrastiveError: If the extension is not a format matplotlib writes.
    """
    target = Path(path)
    file_format = target.suffix.lstrip(".").lower()
    if file_format not in figure.canvas.get_supported_filetypes():
        raise ContrastiveError(f"cannot save a figure as {target.name}: use .png, .pdf or .svg")
    with atomic_path(target) as temporary:
        figure.savefig(temporary, format=file_format, dpi=dpi, bbox_inches="tight")
    return target
