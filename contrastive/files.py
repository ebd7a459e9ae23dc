"""Safe file writing and loading: atomic replace, and torch loading without code execution.

Every artefact (checkpoints, weights, embeddings, reports) is written to a temporary file in
the same folder and renamed over the target, so a kill during a save never leaves a corrupt
file where the previous good one was.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from contrastive.errors import ContrastiveError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``target``; renames it over ``target`` on success.

    On an exception the temporary file is removed and ``target`` is left untouched.
    """
    target_path = Path(target)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target_path.name}.", suffix=".tmp",
                                         dir=target_path.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        with open(temporary_path, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary_path, target_path)
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``target`` atomically."""
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")


def save_torch_atomic(obj: Any, target: str | os.PathLike) -> None:
    """``torch.save`` to ``target`` atomically."""
    with atomic_path(target) as temporary:
        torch.save(obj, temporary)


def load_torch_safely(path: str | os.PathLike) -> Any:
    """``torch.load`` with ``weights_only=True`` onto the CPU, with clear errors.

    Raises:
        ContrastiveError: If the file is missing, not a torch file, or holds objects other
            than tensors and plain containers (a pickle that could run code is refused).
    """
    file = Path(path)
    if not file.is_file():
        raise ContrastiveError(f"file not found: {file}")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ContrastiveError(
            f"refusing to load {file}: it holds objects other than tensors and plain data "
            f"(weights_only=True). {first_line}"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ContrastiveError(f"cannot read {file} as a torch file: {error}") from error
