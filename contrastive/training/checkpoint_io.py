"""Checkpoint files written atomically, read without executing pickled code, and write
failures (a full disk, a read-only folder) reported as one clear line."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from typing import Any

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from contrastive.errors import ContrastiveError
from contrastive.files import load_torch_safely, save_torch_atomic


@contextlib.contextmanager
def explained_write_errors(target: str | os.PathLike, what: str = "file") -> Iterator[None]:
    """Turns an ``OSError`` while writing ``target`` into a one-line ContrastiveError.

    Writes go through :func:`contrastive.files.atomic_path`, so a failed write leaves the
    previous version of ``target`` in place, which the message says.

    Raises:
        ContrastiveError: Naming the file and the reason.
    """
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        hint = (
            "; free some disk space or choose another --out"
            if error.errno in (errno.ENOSPC, errno.EDQUOT)
            else ""
        )
        raise ContrastiveError(
            f"cannot write {what} {target}: {reason} (the previous {what}, if any, is "
            f"unchanged){hint}"
        ) from error


def save_torch_file(obj: Any, target: str | os.PathLike, what: str = "file") -> None:
    """:func:`~contrastive.files.save_torch_atomic` with write failures explained."""
    with explained_write_errors(target, what):
        save_torch_atomic(obj, target)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file and renames it over the target; loads with
    ``weights_only=True`` so a tampered checkpoint cannot run code."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        save_torch_file(checkpoint, path, what="checkpoint")

    def load_checkpoint(
        self, path: Any, map_location: Callable | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_torch_safely(path)
