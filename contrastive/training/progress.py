"""Progress reporting: a live bar in a terminal, epoch lines (at most one per 10 s) in logs."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

from contrastive.training.budget import FillTimeBudget

log = logging.getLogger(__name__)

#: Runs expected to take longer than this get the one-line alternative printed.
LONG_RUN_SECONDS = 30 * 60


def format_duration(seconds: float) -> str:
    """``"7 h 52 min"``, ``"12 min 5 s"`` or ``"40 s"``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


class DurationForecast(pl.Callback):
    """Says how long a run without a time budget will take, once the step rate is known.

    The first ``skip_steps`` steps (start-up, allocation, first-batch caching) are not
    timed; after at least ``min_steps`` more steps and ``min_seconds``, the expected
    duration of the whole run is logged once, with the images/s behind it, and where it is
    longer than :data:`LONG_RUN_SECONDS` the shorter alternative. From then on
    :attr:`seconds_left` feeds the progress line. Runs with a time budget
    (:class:`FillTimeBudget`) already end on time and get no forecast; their time left is
    the budget's.

    Args:
        skip_steps: Steps not timed.
        min_steps: Timed steps needed before forecasting.
        min_seconds: Timed seconds needed before forecasting.
        clock: Seconds as a float (tests pass a simulated clock).
    """

    def __init__(
        self,
        skip_steps: int = 3,
        min_steps: int = 10,
        min_seconds: float = 5.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.skip_steps, self.min_steps, self.min_seconds = skip_steps, min_steps, min_seconds
        self.clock = clock
        self.started: tuple[int, float] | None = None
        self.seconds_per_step: float | None = None
        self.forecast: str | None = None
        self._seconds_left: float | None = None
        # A budget run's time left is read from its budget when shown, not every step.
        self._budget: tuple[FillTimeBudget, pl.Trainer] | None = None
        self._looked = False
        self._first_step = 0

    @property
    def seconds_left(self) -> float | None:
        """Seconds of training left: the budget's, or the forecast's; None before known."""
        if self._budget is not None:
            budget, trainer = self._budget
            return budget.training_seconds_left(trainer)
        return self._seconds_left

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._first_step = trainer.global_step  # > 0 in a resumed run

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        if not self._looked:  # callbacks are fixed once fit runs: look once
            self._looked = True
            budget = next((c for c in trainer.callbacks if isinstance(c, FillTimeBudget)), None)
            self._budget = None if budget is None else (budget, trainer)
        if self._budget is not None:
            return
        step, now = trainer.global_step, self.clock()
        if self.started is None:
            if step >= self.skip_steps:
                self.started = (step, now)
            return
        timed_steps, timed_seconds = step - self.started[0], now - self.started[1]
        total = total_steps(trainer)
        if total is None or timed_steps <= 0:
            return
        if self.seconds_per_step is None:
            if timed_steps < self.min_steps or timed_seconds < self.min_seconds:
                return
            self.seconds_per_step = timed_seconds / timed_steps
            self._announce(trainer, self.seconds_per_step, total, step)
        else:
            self.seconds_per_step = timed_seconds / timed_steps
        self._seconds_left = max(0, total - step) * self.seconds_per_step

    def _announce(
        self, trainer: pl.Trainer, seconds_per_step: float, total: int, step: int
    ) -> None:
        config = getattr(trainer.lightning_module, "config", None)
        batch = getattr(config, "batch_size", None)
        rate = f", {batch * trainer.world_size / seconds_per_step:,.0f} images/s" if batch else ""
        if self._first_step > 0:
            # A resumed run: the whole run's time read as the rest's (98 s said, 72 s taken).
            left = max(0, total - self._first_step)
            expected = left * seconds_per_step
            steps = f"{left:,} steps left of {total:,}"
        else:
            expected = total * seconds_per_step
            steps = f"{total:,} steps"
        self.forecast = (
            f"expected training time: {format_duration(expected)} ({steps} at "
            f"{seconds_per_step:.3g} s/step{rate} on this machine)"
        )
        if expected > LONG_RUN_SECONDS:
            self.forecast += (
                "; that is long here: stop with Ctrl-C (a checkpoint is kept) and try "
                "`--time-budget 10m`, which plans a smaller setting that ends on time"
            )
        if trainer.is_global_zero:
            log.info("%s", self.forecast)


def total_steps(trainer: pl.Trainer) -> int | None:
    """The steps the run will take: ``max_steps``, else epochs x batches per epoch."""
    if trainer.max_steps and trainer.max_steps > 0:
        return int(trainer.max_steps)
    batches = trainer.num_training_batches
    if trainer.max_epochs is None or not isinstance(batches, int) or batches <= 0:
        return None
    return int(trainer.max_epochs) * batches


class EpochSummary(pl.Callback):
    """Logs ``epoch N/M: loss, lr, images/s, time left`` at the end of epochs.

    At most one line per ``min_interval`` seconds (a folder of 50 images runs hundreds of
    epochs a minute; their lines would bury the plan and the results), always the first
    epoch's, and the last epoch's when training ends.

    Args:
        forecast: Supplies the time left of a run without a budget.
        min_interval: Seconds between lines.
        clock: Seconds as a float (tests pass a simulated clock).
    """

    def __init__(
        self,
        forecast: DurationForecast | None = None,
        min_interval: float = 10.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.forecast = forecast
        self.min_interval = min_interval
        self.clock = clock
        self._logged_at: float | None = None
        self._unlogged_epoch: int | None = None
        self._shown_monitors: dict[str, float] = {}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:  # one set of epoch lines, not one per DDP process
            return
        now = self.clock()
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if self._logged_at is not None and now - self._logged_at < self.min_interval and not last:
            self._unlogged_epoch = trainer.current_epoch
            return
        self._log(trainer, pl_module, trainer.current_epoch)
        self._logged_at, self._unlogged_epoch = now, None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self._unlogged_epoch is not None:
            self._log(trainer, pl_module, self._unlogged_epoch)
            self._unlogged_epoch = None

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        metrics = dict(trainer.callback_metrics)
        # The learning rate and speed are logged every few steps, which need not fall in
        # this epoch (a re-planned budget moves the interval): read now, they are this
        # epoch's, not an earlier one's beside this epoch's loss.
        optimizers = getattr(trainer, "optimizers", None)
        if optimizers:
            metrics["lr"] = optimizers[0].param_groups[0]["lr"]
        speed = getattr(pl_module, "images_per_second", None)
        if speed:
            metrics["img_per_s"] = speed
        parts = [
            f"{name} {float(metrics[name]):.4g}"
            for name in ("loss", "lr", "img_per_s")
            if name in metrics
        ]
        # Label-free health values are measured every few hundred steps: repeating them on
        # every line would read as fresh measurements, so each is shown once per change.
        monitors = {
            name: float(value) for name, value in metrics.items() if name.startswith("monitor/")
        }
        parts += [
            f"{name} {value:.4f}"
            for name, value in monitors.items()
            if self._shown_monitors.get(name) != value
        ]
        self._shown_monitors = monitors
        if self.forecast is not None and self.forecast.seconds_left is not None:
            parts.append(f"about {format_duration(self.forecast.seconds_left)} left")
        log.info(
            "epoch %d/%d (step %d): %s",
            epoch + 1,
            trainer.max_epochs,
            trainer.global_step,
            ", ".join(parts),
        )


class ProgressBarWithTimeLeft(TQDMProgressBar):
    """Lightning's bar, plus the whole run's time left (the bar itself counts one epoch).

    The bar moves every step, but its numbers (loss, lr, images/s) are read from the device
    at most every ``metrics_interval`` seconds: each read waits for the device to finish
    its queued work, which on a fast GPU would stall every step.

    Args:
        forecast: Supplies the time left.
        refresh_rate: Steps between bar updates.
        metrics_interval: Seconds between reads of the shown numbers.
        clock: Seconds as a float (tests pass a simulated clock).
    """

    def __init__(
        self,
        forecast: DurationForecast,
        refresh_rate: int = 1,
        metrics_interval: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.forecast = forecast
        self.metrics_interval = metrics_interval
        self.clock = clock
        self._shown: tuple[float, dict[str, Any]] | None = None

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        now = self.clock()
        if self._shown is not None and now - self._shown[0] < self.metrics_interval:
            return self._shown[1]
        metrics = super().get_metrics(trainer, pl_module)
        if self.forecast.seconds_left is not None:
            metrics["run left"] = format_duration(self.forecast.seconds_left)
        self._shown = (now, metrics)
        return metrics


def progress_callbacks(bar: bool | None = None) -> list[pl.Callback]:
    """A progress bar (loss, lr, images/s), or epoch lines.

    Both show the time left (:class:`DurationForecast`).

    Args:
        bar: Draw the bar (True) or print epoch lines (False); None: the bar where stderr
            is a terminal (a log file would fill with the bar's redrawn frames).
    """
    forecast = DurationForecast()
    if sys.stderr.isatty() if bar is None else bar:
        return [forecast, ProgressBarWithTimeLeft(forecast)]
    return [forecast, EpochSummary(forecast)]
