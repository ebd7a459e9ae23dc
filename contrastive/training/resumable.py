"""Loader position in checkpoints: a resumed run sees the batches an unbroken run would.

:class:`~contrastive.data.cache.CachedImageLoader` draws each epoch's permutation from
``(seed, epoch)``. Lightning restores weights, optimiser and loop counters on resume, not
the loader's place: from a checkpoint saved mid-epoch (Ctrl-C, SIGTERM) it runs the rest of
the epoch on a fresh iterator, fetched before any epoch hook, of a loader that believes it
is at epoch 0 and starts at its first batch. :class:`LoaderPosition` stores the next
``(epoch, batch)`` in every checkpoint and puts the loader there before that first fetch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl

from contrastive.data.cache import CachedImageLoader
from contrastive.training.lightning_compat import batches_done_this_epoch, last_started_epoch

CHECKPOINT_KEY = "loader_position"


class ResumableLoader:
    """A :class:`CachedImageLoader` that can start its next epoch at any batch.

    Args:
        loader: The epoch-seeded loader; it keeps its sharding and permutations.
    """

    def __init__(self, loader: CachedImageLoader) -> None:
        self.loader = loader
        self._skip = 0

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration use the permutation of ``epoch``."""
        self.loader.set_epoch(epoch)

    def set_shard(self, rank: int, world_size: int) -> None:
        """Reads only the rows of process ``rank`` out of ``world_size``."""
        self.loader.rank, self.loader.world_size = rank, world_size

    def start_at(self, epoch: int, batch: int) -> None:
        """Makes the next iteration yield the batches of ``epoch`` from number ``batch`` on."""
        self.set_epoch(epoch)
        self._skip = batch

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        batches = iter(self.loader)
        # Skipped batches are read and dropped: only once per resume, and it keeps the
        # loader's batching in one place.
        for _ in range(skip):
            next(batches, None)
        yield from batches


class LoaderPosition(pl.Callback):
    """Keeps a :class:`ResumableLoader` on the right shard, epoch and batch.

    Args:
        loader: The training loader.
    """

    def __init__(self, loader: ResumableLoader) -> None:
        self.loader = loader

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Runs in every training process, whatever launched it, so each process reads its
        # own shard even when the loader was built before the processes existed (ddp_spawn).
        self.loader.set_shard(trainer.global_rank, trainer.world_size)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.loader.set_epoch(trainer.current_epoch)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        epoch = last_started_epoch(trainer)
        # Batches of this epoch whose optimiser step is done: the resumed run starts after them.
        done = batches_done_this_epoch(trainer)
        if done >= len(self.loader):
            epoch, done = epoch + 1, 0
        checkpoint[CHECKPOINT_KEY] = {"epoch": epoch, "batch": done}

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        position = checkpoint.get(CHECKPOINT_KEY)
        if position is not None:
            self.loader.start_at(int(position["epoch"]), int(position["batch"]))
