"""Duration forecast and time left, on a simulated clock and a stand-in trainer."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import pytest

from contrastive.training.budget import FillTimeBudget
from contrastive.training.progress import (
    DurationForecast,
    EpochSummary,
    ProgressBarWithTimeLeft,
    format_duration,
    progress_callbacks,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_trainer(max_steps: int = -1, epochs: int = 100, batches: int = 40) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=0,
        callbacks=[],
        max_steps=max_steps,
        max_epochs=epochs,
        num_training_batches=batches,
        world_size=1,
        is_global_zero=True,
        current_epoch=0,
        callback_metrics={},
        lightning_module=SimpleNamespace(config=SimpleNamespace(batch_size=128)),
    )


def run_steps(forecast: DurationForecast, trainer, clock: Clock, steps: int, seconds: float):
    for _ in range(steps):
        trainer.global_step += 1
        clock.now += seconds
        forecast.on_train_batch_end(trainer, trainer.lightning_module)


def test_format_duration() -> None:
    assert format_duration(40.4) == "40 s"
    assert format_duration(725) == "12 min 5 s"
    assert format_duration(7 * 3600 + 52 * 60 + 10) == "7 h 52 min"


def test_long_run_is_forecast_once_with_rate_and_alternative(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, trainer = Clock(), fake_trainer(epochs=100, batches=40)  # 4,000 steps
    forecast = DurationForecast(skip_steps=3, min_steps=10, min_seconds=5.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="contrastive.training.progress"):
        run_steps(forecast, trainer, clock, steps=3, seconds=9.0)  # start-up: not timed
        run_steps(forecast, trainer, clock, steps=9, seconds=2.0)
        assert forecast.forecast is None  # 9 timed steps: not yet
        run_steps(forecast, trainer, clock, steps=30, seconds=2.0)
    messages = [
        r.getMessage() for r in caplog.records if "expected training time" in r.getMessage()
    ]
    assert len(messages) == 1
    assert "2 h 13 min (4,000 steps at 2 s/step, 64 images/s" in messages[0]
    assert "--time-budget 10m" in messages[0]
    assert forecast.seconds_left == pytest.approx((4000 - 42) * 2.0)


def test_short_run_gets_no_alternative_and_time_left_reaches_the_epoch_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, trainer = Clock(), fake_trainer(max_steps=100)
    forecast = DurationForecast(skip_steps=1, min_steps=5, min_seconds=1.0, clock=clock)
    run_steps(forecast, trainer, clock, steps=20, seconds=0.5)
    assert forecast.forecast is not None and "--time-budget" not in forecast.forecast
    assert "50 s (100 steps at 0.5 s/step, 256 images/s" in forecast.forecast
    with caplog.at_level(logging.INFO, logger="contrastive.training.progress"):
        EpochSummary(forecast).on_train_epoch_end(trainer, trainer.lightning_module)
    assert "about 40 s left" in caplog.records[-1].getMessage()


def epoch_lines(
    caplog: pytest.LogCaptureFixture, epochs_run: int, max_epochs: int, seconds_per_epoch: float
) -> list[str]:
    """The epoch lines of ``epochs_run`` epochs (of ``max_epochs``) on a simulated clock."""
    caplog.clear()
    clock, trainer = Clock(), fake_trainer(epochs=max_epochs, batches=1)
    summary = EpochSummary(min_interval=10.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="contrastive.training.progress"):
        for epoch in range(epochs_run):
            trainer.current_epoch, trainer.global_step = epoch, epoch + 1
            clock.now += seconds_per_epoch
            summary.on_train_epoch_end(trainer, trainer.lightning_module)
        summary.on_train_end(trainer, trainer.lightning_module)
    return [record.getMessage() for record in caplog.records]


def test_epoch_lines_come_at_most_once_per_interval_and_the_last_one_always(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 300 epochs of 0.1 s (a folder of 50 images): one line per 10 s, not 300.
    lines = epoch_lines(caplog, 300, 300, 0.1)
    assert lines[0].startswith("epoch 1/300 ")
    assert lines[-1].startswith("epoch 300/300 (step 300)")
    assert 3 <= len(lines) <= 5  # ~30 s of epochs
    # A run stopped early (a time budget) still ends with its last epoch's line.
    lines = epoch_lines(caplog, 7, 300, 0.1)
    assert [line.split(" (")[0] for line in lines] == ["epoch 1/300", "epoch 7/300"]
    # Epochs longer than the interval: every one gets its line, once.
    lines = epoch_lines(caplog, 5, 300, 30.0)
    assert [line.split(" (")[0] for line in lines] == [f"epoch {n}/300" for n in range(1, 6)]


def test_health_values_are_shown_once_per_measurement(caplog: pytest.LogCaptureFixture) -> None:
    trainer = fake_trainer(epochs=4, batches=1)
    summary = EpochSummary(min_interval=0.0)
    measured = {"monitor/rank": 50.8, "monitor/collapse_std": 0.087}
    with caplog.at_level(logging.INFO, logger="contrastive.training.progress"):
        for epoch, collapse_std, rank in [(0, 0.087, 50.8), (1, 0.088, 50.8), (2, 0.088, 51.2)]:
            measured.update({"monitor/rank": rank, "monitor/collapse_std": collapse_std})
            trainer.current_epoch, trainer.callback_metrics = epoch, dict(measured)
            summary.on_train_epoch_end(trainer, trainer.lightning_module)
    lines = [record.getMessage() for record in caplog.records]
    assert "monitor/rank 50.8000" in lines[0] and "monitor/collapse_std 0.0870" in lines[0]
    assert "monitor/rank" not in lines[1] and "monitor/collapse_std 0.0880" in lines[1]
    assert "monitor/rank 51.2000" in lines[2] and "monitor/collapse_std" not in lines[2]


def test_budget_runs_get_no_forecast_and_the_budget_s_time_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, trainer = Clock(), fake_trainer()
    trainer.callbacks.append(FillTimeBudget(deadline=100.0, reserve_seconds=5.0, clock=clock))
    forecast = DurationForecast(skip_steps=0, min_steps=1, min_seconds=0.0, clock=clock)
    run_steps(forecast, trainer, clock, steps=20, seconds=1.0)
    assert forecast.forecast is None
    # The deadline less the reserve for the work after training: 100 - 5 - 20 (the README
    # promised time left on every line; budget runs showed none).
    assert forecast.seconds_left == pytest.approx(75.0)
    summary = EpochSummary(forecast, clock=clock)
    with caplog.at_level(logging.INFO, logger="contrastive.training.progress"):
        summary.on_train_epoch_end(trainer, trainer.lightning_module)
    assert "about 1 min 15 s left" in caplog.records[-1].getMessage()
    run_steps(forecast, trainer, clock, steps=90, seconds=1.0)  # past the deadline
    assert forecast.seconds_left == 0.0


def test_progress_bar_reads_the_metrics_at_most_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each read of the shown numbers waits for the device: not on every step.
    from pytorch_lightning.callbacks import TQDMProgressBar

    from contrastive.training.progress import ProgressBarWithTimeLeft

    reads: list[float] = []
    clock = Clock()
    monkeypatch.setattr(
        TQDMProgressBar, "get_metrics", lambda self, trainer, module: reads.append(clock.now) or {}
    )
    bar = ProgressBarWithTimeLeft(DurationForecast(), metrics_interval=1.0, clock=clock)
    for _ in range(100):  # 100 steps of 50 ms
        bar.get_metrics(None, None)  # type: ignore[arg-type]
        clock.now += 0.05
    assert len(reads) == 5
    assert all(later - earlier >= 1.0 for earlier, later in zip(reads, reads[1:]))


def test_an_epoch_line_shows_the_learning_rate_and_speed_of_its_own_epoch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trainer = fake_trainer(epochs=4, batches=5)
    # The last logged values came from an earlier epoch's logging step.
    trainer.callback_metrics = {"loss": 5.169, "lr": 0.07498, "img_per_s": 163.3}
    trainer.optimizers = [SimpleNamespace(param_groups=[{"lr": 0.0625}])]
    module = SimpleNamespace(images_per_second=201.5)
    trainer.current_epoch = 1
    with caplog.at_level(logging.INFO, logger="contrastive.training.progress"):
        EpochSummary(min_interval=0.0).on_train_epoch_end(trainer, module)
    (line,) = [record.getMessage() for record in caplog.records]
    assert line == "epoch 2/4 (step 0): loss 5.169, lr 0.0625, img_per_s 201.5"


def test_a_resumed_run_forecasts_the_steps_it_has_left(caplog: pytest.LogCaptureFixture) -> None:
    clock, trainer = Clock(), fake_trainer(epochs=100, batches=40)  # 4,000 steps
    trainer.global_step = 3000  # resumed at step 3,000
    forecast = DurationForecast(skip_steps=3, min_steps=10, min_seconds=5.0, clock=clock)
    forecast.on_train_start(trainer, trainer.lightning_module)
    with caplog.at_level(logging.INFO, logger="contrastive.training.progress"):
        run_steps(forecast, trainer, clock, steps=20, seconds=2.0)
    (message,) = [r.getMessage() for r in caplog.records if "expected" in r.getMessage()]
    # Before: "2 h 13 min (4,000 steps ...", the whole run's time, not the rest's.
    assert message.startswith("expected training time: 33 min 20 s (1,000 steps left of 4,000")


@pytest.mark.parametrize(
    ("terminal", "bar", "drawn"),
    [(True, None, True), (False, None, False), (True, False, False), (False, True, True)],
)
def test_the_bar_is_drawn_on_a_terminal_unless_told(
    monkeypatch: pytest.MonkeyPatch, terminal: bool, bar: bool | None, drawn: bool
) -> None:
    # `train --no-progress` (bar=False) gives a terminal the log's epoch lines.
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    callbacks = progress_callbacks(bar)
    assert isinstance(callbacks[0], DurationForecast)
    assert isinstance(callbacks[1], ProgressBarWithTimeLeft if drawn else EpochSummary)


def test_train_no_progress_reaches_training(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import contrastive.training.train as training
    from contrastive.cli import main

    seen = {}

    def fake_train(config, **options):  # noqa: ANN001, ANN003, ANN202
        seen.update(options)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", fake_train)
    for flags, expected in (([], None), (["--no-progress"], False)):
        arguments = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *flags]
        assert main([*arguments, "--epochs", "1"]) == 130
        assert seen["progress_bar"] is expected
