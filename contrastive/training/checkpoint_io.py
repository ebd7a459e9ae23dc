"""Checkpoint files written atomically and read without executing pickled code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from contrastive.files import load_torch_safely, save_torch_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file and renames it over the target; loads with
    ``weights_only=True`` so a tampered checkpoint cannot run code."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        save_torch_atomic(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Callable | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return load_torch_safely(path)
