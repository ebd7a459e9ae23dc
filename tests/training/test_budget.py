"""Time budgets: parsing, the up-front plan, and re-planning inside the training loop."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from contrastive.backbone_config import BackboneConfig
from contrastive.errors import ContrastiveError
from contrastive.training.budget import (
    FillTimeBudget,
    parse_duration,
    plan_budget,
    set_total_steps,
)
from contrastive.training.config import OptimConfig, TrainConfig, load_config_file
from contrastive.training.optim import build_optimizer, build_scheduler
from contrastive.training.train import train
from contrastive.views.config import ViewConfig


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), ("1h30m", 5400), (45, 45)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "0s", "-5m", "5m later"])
def test_parse_duration_rejects_bad_text(text: str) -> None:
    with pytest.raises(ContrastiveError, match="time"):
        parse_duration(text)


def test_plan_fills_ninety_percent_of_the_remaining_time() -> None:
    # 100 s at 0.3 s/step: floor(90 / 0.3) = 300 steps, 7 epochs of 45 steps.
    plan = plan_budget(100.0, 0.3, steps_per_epoch=45)
    assert (plan.max_steps, plan.epochs) == (300, 7)
    with pytest.raises(ContrastiveError, match="less than one training step"):
        plan_budget(1.0, 5.0, steps_per_epoch=10)
    # Nothing left: the message says where the budget went, not "leaves -57 s".
    with pytest.raises(
        ContrastiveError,
        match=r"^start-up, scanning, decoding and measuring took 117 s of the 60 s budget",
    ):
        plan_budget(-57.0, 8.4, steps_per_epoch=10, budget_seconds=60.0)


class SimulatedClock:
    """A clock that only moves when a training step says so: no sleeping, no flakiness."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedModule(pl.LightningModule):
    """Each step takes ``seconds_per_step`` of simulated time; records every step's lr."""

    def __init__(self, clock: SimulatedClock, seconds_per_step: float, planned_steps: int) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.clock = clock
        self.seconds_per_step = seconds_per_step
        self.planned_steps = planned_steps
        self.rates: list[float] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.clock.now += self.seconds_per_step
        self.rates.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return self.layer(batch).square().mean()

    def configure_optimizers(self) -> dict:
        optimizer = build_optimizer([self.layer], OptimConfig(warmup_fraction=0.1), 256)
        scheduler = build_scheduler(optimizer, OptimConfig(warmup_fraction=0.1), self.planned_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class WorkAfterTraining(pl.Callback):
    """A callback that announces the seconds it will spend after the last step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def seconds_after_training(self) -> float:
        return self.seconds


def fit_timed(
    planned_steps: int, budget: float, after_training: float = 0.0
) -> tuple[TimedModule, FillTimeBudget, float]:
    """Trains with 20 ms steps (simulated) and returns the module, callback and end time."""
    clock = SimulatedClock()
    module = TimedModule(clock, seconds_per_step=0.02, planned_steps=planned_steps)
    recorded: list[int] = []
    replanner = FillTimeBudget(
        deadline=budget, reserve_seconds=0.0, on_replan=recorded.append, clock=clock
    )
    fit_quietly(module, planned_steps, [replanner, WorkAfterTraining(after_training)])
    assert [total for _, total in replanner.replans] == recorded
    return module, replanner, clock.now


def fit_quietly(module: pl.LightningModule, max_steps: int, callbacks: list) -> None:
    """Fits ``module`` on 10 batches an epoch for up to ``max_steps`` steps, nothing written."""
    trainer = pl.Trainer(
        max_steps=max_steps,
        max_epochs=10_000,
        callbacks=callbacks,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, torch.utils.data.DataLoader(torch.randn(40, 2), batch_size=4))


@pytest.mark.parametrize("planned_steps", [40, 300])
def test_replanning_moves_the_end_of_training_to_the_deadline(planned_steps: int) -> None:
    # Steps take 20 ms, so 100 fit in 2 s; the plan says 40 (too few) or 300 (too many).
    module, replanner, ended = fit_timed(planned_steps, budget=2.0)
    trained = len(module.rates)
    assert replanner.replans, "the plan was far off and should have been corrected"
    assert trained == replanner.replans[-1][1]
    assert 99 <= trained <= 101
    assert ended == pytest.approx(2.0, abs=0.021)  # ends within one step of the deadline
    # The cosine schedule still ends at (almost) zero on the last step.
    peak = max(module.rates)
    assert module.rates[-1] < 0.02 * peak
    decay = module.rates[int(0.2 * trained) :]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(decay, decay[1:]))


def test_a_plan_of_a_few_slow_steps_is_corrected_before_it_ends() -> None:
    # A tiny folder: the probe's first steps priced a step at 0.2 s, so 9 steps were planned
    # for 2 s; the real 20 ms steps would end the run after 0.18 s of its 2 s.
    module, replanner, ended = fit_timed(9, budget=2.0)
    assert replanner.replans and replanner.replans[0][0] <= 3
    assert 99 <= len(module.rates) <= 101 and ended == pytest.approx(2.0, abs=0.021)


def test_the_end_of_training_leaves_the_time_the_callbacks_announce() -> None:
    # 0.5 s of announced work after the last step (the final health measurement): training
    # stops at 1.5 s of a 2 s budget, 75 steps of 20 ms, so the command ends on time.
    module, _, ended = fit_timed(40, budget=2.0, after_training=0.5)
    assert ended == pytest.approx(1.5, abs=0.021)
    assert 74 <= len(module.rates) <= 76


def test_set_total_steps_stretches_the_cosine_schedule() -> None:
    optimizer = build_optimizer([nn.Linear(2, 2)], OptimConfig(warmup_fraction=0.0), 256)
    scheduler = build_scheduler(optimizer, OptimConfig(warmup_fraction=0.0), total_steps=10)

    class FakeLoop:
        max_steps = 10

    class FakeTrainer:
        num_training_batches = 4
        log_every_n_steps = 20
        lr_scheduler_configs = [type("Config", (), {"scheduler": scheduler})()]
        fit_loop = type("FitLoop", (), {"epoch_loop": FakeLoop(), "max_epochs": 3})()

    trainer = FakeTrainer()
    set_total_steps(trainer, 20)  # type: ignore[arg-type]
    assert (trainer.fit_loop.epoch_loop.max_steps, trainer.fit_loop.max_epochs) == (20, 5)
    assert trainer.log_every_n_steps == 20  # the run reaches its interval: unchanged
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    # Half-way through a 20-step cosine from 0.12 the rate is about half the peak.
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.06, rel=0.1)
    set_total_steps(trainer, 12)
    assert trainer.log_every_n_steps == 1  # a 12-step run logs every step, not never


def test_budget_run_records_the_steps_it_trained(tiny_images: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        data=str(tiny_images),
        out=str(tmp_path / "run"),
        backbone=BackboneConfig("resnet18_quarter"),
        views=ViewConfig(input_size=32),  # cheap steps: the plan fits on a busy machine
        batch_size=8,
        # 10 s failed twice on a loaded host: start-up alone took 13 s with three processes
        # on 2 cores (the run refuses a budget its set-up has used up).
        time_budget="20s",
        num_workers=0,
        cache_dir=str(tmp_path / "cache"),
        precision="32-true",
    )
    result = train(config)
    saved = load_config_file(result.run_dir / "config.yaml")
    # What --resume would continue: the schedule as re-planned, which is what was trained.
    assert saved["max_steps"] == result.config.max_steps == result.module.global_step


class SteppedModule(nn.Module):
    """A training module whose steps take preset times on a simulated clock."""

    def __init__(self, clock: SimulatedClock, step_seconds: list[float]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

        def take_step() -> None:
            clock.now += step_seconds.pop(0)

        # A function survives the probe's deepcopy as itself: the copy moves the same clock.
        self.take_step = take_step

    @property
    def method(self) -> SteppedModule:
        return self

    def prepare_batch(self, batch: torch.Tensor) -> tuple[torch.Tensor]:
        return (batch,)

    def training_loss(self, batch: torch.Tensor, progress: float) -> torch.Tensor:
        self.take_step()
        return (self.weight * batch).sum()


@pytest.mark.parametrize(("fastest", "expected"), [(False, 3.0), (True, 1.0)])
def test_step_timing_skips_the_warm_up_and_takes_the_mean_or_the_fastest(
    monkeypatch: pytest.MonkeyPatch, fastest: bool, expected: float
) -> None:
    from contrastive.training import budget

    clock = SimulatedClock()
    monkeypatch.setattr(budget.time, "perf_counter", clock)
    # Warm-up 10 s (never counted), then 1, 5, 3 s: the mean is 3, the fastest 1.
    module = SteppedModule(clock, [10.0, 1.0, 5.0, 3.0])

    seconds = budget.measure_seconds_per_step(
        module, [torch.ones(2)], "32-true", torch.device("cpu"), steps=3, fastest=fastest
    )

    assert seconds == pytest.approx(expected)
    assert module.weight.item() == 1.0  # a throw-away copy stepped, not the module


def test_step_timing_stops_at_its_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from contrastive.training import budget

    clock = SimulatedClock()
    monkeypatch.setattr(budget.time, "perf_counter", clock)
    # Steps of 108 s against 60 s left: the warm-up alone passes the limit and is the
    # estimate (before: four steps, 432 s, to learn that not one step fits).
    module = SteppedModule(clock, [108.0, 100.0, 100.0, 100.0])
    seconds = budget.measure_seconds_per_step(
        module, [torch.ones(2)], "32-true", torch.device("cpu"), steps=3, max_seconds=60.0
    )
    assert seconds == pytest.approx(108.0) and clock.now == pytest.approx(108.0)
    # Within the limit, every step is timed as before.
    module = SteppedModule(clock, [10.0, 1.0, 5.0, 3.0])
    seconds = budget.measure_seconds_per_step(
        module, [torch.ones(2)], "32-true", torch.device("cpu"), steps=3, max_seconds=60.0
    )
    assert seconds == pytest.approx(3.0)


def test_the_health_monitor_announces_its_final_measurement_at_the_last_price() -> None:
    from contrastive.training.budget import seconds_after_training
    from contrastive.training.health import HealthMonitor

    monitor = HealthMonitor([], ViewConfig())
    assert seconds_after_training([monitor, pl.Callback()]) == 0.0  # nothing measured yet
    monitor.last_cost = 0.8
    assert seconds_after_training([monitor, WorkAfterTraining(0.5)]) == pytest.approx(1.3)


def test_the_first_measurement_is_priced_before_there_is_one(
    tiny_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from contrastive.data.folder import ImageFolder
    from contrastive.training import health

    clock = [0.0]
    monkeypatch.setattr(health.time, "perf_counter", lambda: clock[0])

    class TenMillisecondsAnImage(nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            clock[0] += 0.01 * len(images)
            return images.mean(dim=(2, 3))

    paths = ImageFolder.scan(tiny_images).paths  # 32 images
    monitor = health.HealthMonitor(paths, ViewConfig(input_size=16))
    monitor.sample = health.HealthSample(paths, ViewConfig(input_size=16), size=32)
    method = SimpleNamespace(backbone=TenMillisecondsAnImage(), projection_head=nn.Identity())
    monitor.on_train_start(None, SimpleNamespace(method=method, device=torch.device("cpu")))
    # 32 whole images and two views of each: 96 forward passes of 10 ms.
    assert monitor.seconds_after_training() == pytest.approx(0.96)
    clock[0] += 100.0
    assert monitor.seconds_after_training() == pytest.approx(0.96)  # priced once
    monitor.last_cost = 0.5
    assert monitor.seconds_after_training() == 0.5  # a measured cost replaces the guess


class SlowingModule(TimedModule):
    """Steps take 20 ms until ``slow_from``, then ``slow_seconds`` (the machine got busy)."""

    def __init__(self, clock: SimulatedClock, slow_from: int, slow_seconds: float) -> None:
        super().__init__(clock, seconds_per_step=0.02, planned_steps=40)
        self.slow_from = slow_from
        self.slow_seconds = slow_seconds

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if len(self.rates) >= self.slow_from:
            self.seconds_per_step = self.slow_seconds
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("slow_seconds", [0.2, 2.0])
def test_a_machine_that_slows_down_after_a_replan_still_ends_on_time(
    slow_seconds: float,
) -> None:
    # At 20 ms a step the re-plan at step 11 (5% of 40) sets 20 s / 0.02 = ~1,000 steps, and
    # the next fraction (15%) would come at step ~150: at 0.2-2 s a step, long after the
    # 20 s deadline. The clock is read every few steps as well, so the run ends on time.
    clock = SimulatedClock()
    module = SlowingModule(clock, slow_from=30, slow_seconds=slow_seconds)
    replanner = FillTimeBudget(deadline=20.0, reserve_seconds=0.0, clock=clock)
    fit_quietly(module, 40, [replanner])
    assert replanner.replans[0][1] > 500  # the fast start promised many steps
    # One process reads the clock every step: the step that passed the deadline is the last.
    assert clock.now < 20.0 + slow_seconds
    assert len(module.rates) == module.global_step == replanner.replans[-1][1]
    # The time-sliced re-plans kept the schedule near the real end: lr decayed most of the way.
    assert module.rates[-1] < 0.3 * max(module.rates)


class BurstModule(TimedModule):
    """Steps take 20 ms, but ``burst_seconds`` for the steps in ``burst`` (another process
    took the cores for a while)."""

    def __init__(self, clock: SimulatedClock, burst: range, burst_seconds: float) -> None:
        super().__init__(clock, seconds_per_step=0.02, planned_steps=40)
        self.burst = burst
        self.burst_seconds = burst_seconds

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seconds_per_step = self.burst_seconds if len(self.rates) in self.burst else 0.02
        return super().training_step(batch, batch_idx)


def test_a_passing_burst_of_load_does_not_end_the_run_early() -> None:
    # 20 s of 20 ms steps, but steps 800-803 take 0.5 s each (2 s, a time slice) at ~85% of
    # the budget. Priced by that window alone, the time left held a few steps: the run ended
    # at 18.08 s (a user's run: 2.8 s/step for 4 steps, 15 s early of 2 minutes).
    clock = SimulatedClock()
    module = BurstModule(clock, burst=range(800, 804), burst_seconds=0.5)
    replanner = FillTimeBudget(deadline=20.0, reserve_seconds=0.0, clock=clock)
    fit_quietly(module, 40, [replanner])
    assert clock.now > 19.5
    assert module.rates[-1] < 0.05 * max(module.rates)


def test_a_run_that_slowed_to_under_half_its_plan_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 20 ms steps promise ~1,000 steps at the first re-plan; from step 30 on, steps take
    # 0.2 s and the run ends with about a tenth of them (the sweep: 257 of 2,176 steps while
    # another training shared the 2 cores, and nothing said so).
    clock = SimulatedClock()
    module = SlowingModule(clock, slow_from=30, slow_seconds=0.2)
    replanner = FillTimeBudget(deadline=20.0, reserve_seconds=0.0, clock=clock)
    with caplog.at_level(logging.WARNING):
        fit_quietly(module, 40, [replanner])
    largest = max(total for _, total in replanner.replans)
    assert module.global_step < largest / 2
    message = f"time budget: the run trained {module.global_step} steps, under half of the"
    assert message in caplog.text
    assert f"{largest} planned at step" in caplog.text
    assert "OMP_NUM_THREADS=1" in caplog.text


def test_a_steady_or_briefly_loaded_run_is_not_said_to_fall_short() -> None:
    _, steady, _ = fit_timed(planned_steps=40, budget=20.0)
    assert steady.replans and steady.shortfall(steady.replans[-1][1]) is None
    clock = SimulatedClock()
    module = BurstModule(clock, burst=range(800, 804), burst_seconds=0.5)
    replanner = FillTimeBudget(deadline=20.0, reserve_seconds=0.0, clock=clock)
    fit_quietly(module, 40, [replanner])
    assert replanner.shortfall(module.global_step) is None
