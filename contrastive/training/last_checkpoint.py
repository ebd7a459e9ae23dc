"""``checkpoints/last.ckpt``: the state ``--resume`` continues from, current when a run ends.

Lightning's ``ModelCheckpoint`` writes ``last.ckpt`` only together with a kept checkpoint, so
a run whose epochs were not a multiple of ``--checkpoint-every`` ended with a stale one (3
epochs with checkpoints every 2 left step 8 of 12), which ``--resume`` and ``embed
--projection-head`` then read. Here ``last.ckpt`` is written at epoch ends, at most once per
``min_interval`` seconds (a small folder's epoch can take a fraction of a second), and always
when training ends; kept checkpoints stay ``ModelCheckpoint``'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint


class SaveLastCheckpoint(Checkpoint):
    """Writes ``path`` at epoch ends (at most once per ``min_interval`` s) and at the end.

    A :class:`~pytorch_lightning.callbacks.Checkpoint` so that Lightning runs it after the
    other callbacks, whose state it saves.

    Args:
        path: The checkpoint file (``RUN/checkpoints/last.ckpt``).
        min_interval: Least seconds between two epoch-end writes; 0: every epoch.
        clock: Seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self, path: Path, min_interval: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0, got {min_interval}")
        self.path, self.min_interval, self.clock = Path(path), min_interval, clock
        self._saved_at: float | None = None
        self._saved_step: int | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        due = self._saved_at is None or self.clock() - self._saved_at >= self.min_interval
        # Saving waits for every DDP process: they must all decide alike, so rank 0 decides.
        if trainer.strategy.broadcast(due, src=0):
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._saved_step != trainer.global_step:
            self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        self._saved_at, self._saved_step = self.clock(), trainer.global_step
