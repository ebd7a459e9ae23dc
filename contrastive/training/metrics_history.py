"""A resumed run keeps the rows ``metrics.csv`` held before it stopped.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts, so a resumed run
would lose its history. :class:`KeepMetricsHistory` reads the file before training and puts
the rows logged up to the checkpoint back in front of the new ones; rows the interrupted run
logged after its checkpoint are dropped, since the resumed run logs those steps again.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl


class KeepMetricsHistory(pl.Callback):
    """Carries the rows of ``metrics_file`` into the resumed run's log.

    Args:
        metrics_file: The ``metrics.csv`` of the run being resumed (read now, before the
            logger removes it).
    """

    def __init__(self, metrics_file: Path) -> None:
        self.rows: list[dict[str, str]] = []
        if metrics_file.is_file():
            with open(metrics_file, newline="", encoding="utf-8") as file:
                self.rows = list(csv.DictReader(file))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rows, self.rows = self.rows, []
        if not rows or not trainer.is_global_zero or trainer.logger is None:
            return
        # Logged steps count finished optimiser steps from 0, like ``global_step``.
        kept = [row for row in rows if _step(row) < trainer.global_step]
        # Nothing is logged before training starts, so these rows come first; the logger's
        # next save writes them with the new ones.
        for row in kept:
            values = {key: _number(value) for key, value in row.items() if key != "step" and value}
            trainer.logger.log_metrics(values, step=int(_step(row)))


def _number(text: str) -> float | int | str:
    """The value a CSV cell was written from, so that it is written back unchanged."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _step(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "inf")
    except ValueError:
        return float("inf")
