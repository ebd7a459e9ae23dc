"""Progress reporting: a live bar in a terminal, one line per epoch in logs and CI."""

from __future__ import annotations

import logging
import sys

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

log = logging.getLogger(__name__)


class EpochSummary(pl.Callback):
    """Logs ``epoch N/M: loss, lr, images/s`` at the end of every epoch."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        parts = [
            f"{name} {float(metrics[name]):.4g}"
            for name in ("loss", "lr", "img_per_s")
            if name in metrics
        ]
        parts += [
            f"{name} {float(value):.4f}"
            for name, value in metrics.items()
            if name.startswith("monitor/")
        ]
        log.info(
            "epoch %d/%d (step %d): %s",
            trainer.current_epoch + 1,
            trainer.max_epochs,
            trainer.global_step,
            ", ".join(parts),
        )


def progress_callbacks() -> list[pl.Callback]:
    """A progress bar (loss, lr, images/s) when attached to a terminal, else epoch lines."""
    if sys.stderr.isatty():
        return [TQDMProgressBar(refresh_rate=1)]
    return [EpochSummary()]
