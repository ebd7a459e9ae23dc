"""A resumed run keeps the rows ``metrics.csv`` held before it stopped.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` as soon as its writer is made
(before training, and even when the resumed run has nothing left to train), so a resumed
run lost its history. :class:`HistoryCSVLogger` leaves the file in place and, at its first
save, replaces it by the rows logged up to the checkpoint followed by the new ones. Rows the
interrupted run logged after its checkpoint are dropped: the resumed run logs those steps
again.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from contrastive.files import atomic_path
from contrastive.training.checkpoint_io import explained_write_errors

METRICS_FILE = "metrics.csv"


class HistoryCSVLogger(CSVLogger):
    """A ``CSVLogger`` for a resumed run: ``metrics.csv`` keeps the rows logged before.

    Args:
        save_dir: The run directory (``metrics.csv`` is written there).
        resume_step: The checkpoint's ``global_step``: rows logged at this step or later
            are dropped (the resumed run logs them again). ``math.inf`` keeps every row
            (the checkpoint's step is unknown: never lose rows on a guess).
    """

    def __init__(self, save_dir: str | os.PathLike, resume_step: float = math.inf) -> None:
        super().__init__(save_dir=save_dir, name="", version="")
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The writer (one process: the others get Lightning's dummy), made once."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = HistoryWriter(self.log_dir, self.resume_step)
        return self._experiment


class HistoryWriter(ExperimentWriter):
    """Lightning's CSV writer, except that it keeps the earlier rows of ``metrics.csv``.

    The file is not touched until new rows are saved; then it is replaced at once (written
    to a temporary file and renamed) by the kept rows and the new ones, so that a run
    stopped at any moment leaves either the old file or the complete new one.

    Args:
        log_dir: The folder holding ``metrics.csv``.
        resume_step: Rows with a ``step`` below this are kept.
    """

    def __init__(self, log_dir: str, resume_step: float) -> None:
        path = Path(log_dir) / METRICS_FILE
        history, keys = _read_rows(path)
        super().__init__(log_dir)  # _check_log_dir_exists below no longer deletes the file
        self.history = [row for row in history if _step(row) < resume_step]
        # The header goes on with the old columns, so that the kept rows stay aligned.
        self.metrics_keys = sorted(keys)
        self.history_pending = path.is_file()

    def _check_log_dir_exists(self) -> None:
        """Lightning deletes ``metrics.csv`` here; this writer keeps it (see the class)."""

    def save(self) -> None:
        """Appends the new rows; the first save writes the kept rows before them."""
        if not self.metrics or not self.history_pending:
            super().save()
            return
        self._record_new_keys()
        text = io.StringIO(newline="")
        # Lightning's own dialect (CRLF line ends), so later appends match the file.
        writer = csv.DictWriter(text, fieldnames=self.metrics_keys)
        writer.writeheader()
        writer.writerows(self.history)
        writer.writerows(self.metrics)
        _write_exactly(Path(self.metrics_file_path), text.getvalue())
        self.history, self.metrics, self.history_pending = [], [], False


def logged_losses(path: str | os.PathLike) -> list[float]:
    """The ``loss`` column of a ``metrics.csv``, in file (step) order; empty where the file
    does not exist."""
    rows, _ = _read_rows(Path(path))
    return [float(row["loss"]) for row in rows if row.get("loss")]


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and columns of ``path``; none where it does not exist."""
    if not path.is_file():
        return [], []
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
        return rows, list(reader.fieldnames or [])


def _write_exactly(path: Path, text: str) -> None:
    """Writes ``text`` atomically, its CRLF line ends unchanged."""
    with explained_write_errors(path, "metrics log"), atomic_path(path) as temporary:
        temporary.write_bytes(text.encode("utf-8"))


def _step(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "inf")
    except ValueError:
        return float("inf")
