"""The library internals training relies on still exist and behave in the installed versions.

``contrastive/training/lightning_compat.py`` holds every private Lightning attribute the code
touches; Lightly's ``CosineWarmupScheduler`` is re-timed through its ``warmup_epochs`` and
``max_epochs`` attributes. A Lightning or Lightly release that moves one fails here, with a
message naming the attribute, rather than somewhere inside a training run.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from lightly.utils.scheduler import CosineWarmupScheduler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from contrastive.training.config import OptimConfig
from contrastive.training.lightning_compat import (
    INTERNALS,
    batches_done_this_epoch,
    set_step_limit,
)
from contrastive.training.optim import build_optimizer, build_scheduler, stretch_schedule

#: 16 samples in batches of 4: 4 optimiser steps per epoch.
SAMPLES, BATCH = 16, 4
STEPS_PER_EPOCH = SAMPLES // BATCH


class TinyModule(pl.LightningModule):
    """A linear regression: the cheapest module with a real optimiser step."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        return nn.functional.mse_loss(self.layer(inputs), targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(SAMPLES, 3, generator=generator), torch.randn(SAMPLES, 1))
    return DataLoader(data, batch_size=BATCH)


def _trainer(tmp_path: Path, callbacks: list[pl.Callback], **limits: Any) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **limits,
    )


@pytest.mark.parametrize("path", INTERNALS)
def test_each_internal_attribute_exists(path: str, tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, [], max_epochs=1)
    try:
        functools.reduce(getattr, path.split("."), trainer)
    except AttributeError:
        pytest.fail(
            f"pytorch-lightning {pl.__version__} has no Trainer.{path}; "
            "contrastive/training/lightning_compat.py must find another way to reach it"
        )


class _SetLimitAt(pl.Callback):
    """Calls :func:`set_step_limit` once, after optimiser step ``at_step``."""

    def __init__(self, at_step: int, new_limit: int) -> None:
        self.at_step, self.new_limit = at_step, new_limit

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.at_step:
            set_step_limit(trainer, self.new_limit, STEPS_PER_EPOCH)


@pytest.mark.parametrize(
    ("planned", "at_step", "new_limit"),
    [(40, 3, 6), (4, 2, 10)],
    ids=["shortened", "lengthened-past-the-planned-epochs"],
)
def test_step_limit_set_during_fit_ends_training_at_that_step(
    planned: int, at_step: int, new_limit: int, tmp_path: Path
) -> None:
    trainer = _trainer(
        tmp_path,
        [_SetLimitAt(at_step, new_limit)],
        max_steps=planned,
        max_epochs=-(-planned // STEPS_PER_EPOCH),
    )
    trainer.fit(TinyModule(), _loader())
    assert trainer.global_step == new_limit, (
        f"pytorch-lightning {pl.__version__} ignored Trainer.fit_loop.epoch_loop.max_steps / "
        f"fit_loop.max_epochs set during fit: trained {trainer.global_step} steps, "
        f"expected {new_limit} (contrastive/training/lightning_compat.py set_step_limit)"
    )
    # The public read-back the budget code uses sees the new limit.
    assert trainer.max_steps == new_limit
    assert trainer.max_epochs == -(-new_limit // STEPS_PER_EPOCH)


class _RecordBatchesDone(pl.Callback):
    """Records ``batches_done_this_epoch`` where checkpoints are saved, and saves one."""

    def __init__(self, save_at: tuple[int, int] | None = None, path: Path | None = None) -> None:
        self.save_at, self.path = save_at, path
        self.at_batch_start: list[tuple[int, int, int]] = []
        self.at_epoch_end: list[int] = []
        self.saved: list[int] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, idx: int):
        done = batches_done_this_epoch(trainer)
        self.at_batch_start.append((trainer.current_epoch, idx, done))
        if self.save_at == (trainer.current_epoch, idx):
            # Where GracefulInterrupt saves: the previous step is complete, this one not begun.
            trainer.save_checkpoint(self.path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.at_epoch_end.append(batches_done_this_epoch(trainer))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: Any) -> None:
        self.saved.append(batches_done_this_epoch(trainer))


# Expected: the tiny loader does not save its place (LoaderPosition does that in training).
@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before")
def test_batches_done_counts_finished_steps_of_the_epoch_also_after_resume(
    tmp_path: Path,
) -> None:
    path = "Trainer.fit_loop.epoch_loop.batch_progress.current.processed"
    checkpoint = tmp_path / "mid-epoch.ckpt"
    first = _RecordBatchesDone(save_at=(1, 2), path=checkpoint)
    _trainer(tmp_path, [first], max_epochs=2).fit(TinyModule(), _loader())
    expected = [(epoch, idx, idx) for epoch in range(2) for idx in range(STEPS_PER_EPOCH)]
    assert first.at_batch_start == expected, (
        f"pytorch-lightning {pl.__version__}: {path} no longer counts the batches of the "
        "epoch whose step finished (contrastive/training/resumable.py LoaderPosition)"
    )
    assert first.at_epoch_end == [STEPS_PER_EPOCH] * 2, path
    assert first.saved == [2], path

    # A run resumed from that checkpoint starts at batch 2 of epoch 1 and counts on from 2.
    resumed = _RecordBatchesDone()
    trainer = _trainer(tmp_path, [resumed], max_epochs=2)
    trainer.fit(TinyModule(), _loader(), ckpt_path=checkpoint)
    assert [done for _, _, done in resumed.at_batch_start] == [2, 3], (
        f"pytorch-lightning {pl.__version__}: {path} is not restored from a mid-epoch "
        f"checkpoint (saw {resumed.at_batch_start})"
    )
    assert resumed.at_epoch_end == [STEPS_PER_EPOCH], path
    assert trainer.global_step == 2 * STEPS_PER_EPOCH


def test_stretched_lightly_schedule_matches_one_built_for_the_new_length() -> None:
    """``CosineWarmupScheduler.warmup_epochs``/``max_epochs`` are read at every step."""
    config = OptimConfig(warmup_fraction=0.1)
    stretched_optimizer = build_optimizer([nn.Linear(2, 2)], config, batch_size=256)
    stretched = build_scheduler(stretched_optimizer, config, total_steps=10)
    built_optimizer = build_optimizer([nn.Linear(2, 2)], config, batch_size=256)
    built = build_scheduler(built_optimizer, config, total_steps=20)
    assert isinstance(stretched, CosineWarmupScheduler)

    def rates(optimizer: torch.optim.Optimizer, scheduler: Any, steps: int) -> list[float]:
        values = []
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
            values.append(optimizer.param_groups[0]["lr"])
        return values

    rates(stretched_optimizer, stretched, 3)
    rates(built_optimizer, built, 3)
    stretch_schedule(stretched, 20)
    assert (stretched.warmup_epochs, stretched.max_epochs) == (2, 20)
    assert rates(stretched_optimizer, stretched, 17) == pytest.approx(
        rates(built_optimizer, built, 17), rel=1e-9
    ), (
        "lightly's CosineWarmupScheduler no longer follows its warmup_epochs/max_epochs "
        "attributes after construction (contrastive/training/optim.py stretch_schedule)"
    )
