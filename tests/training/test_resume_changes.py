"""``--resume`` with more epochs, a moved data folder, or a folder whose files changed.

Each run is the tiny configuration of ``conftest.py`` (32 images, 4 steps per epoch),
trained in this process.
"""

from __future__ import annotations

import csv
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrastive.errors import ContrastiveError
from contrastive.training.config import TrainConfig, dump_config, load_config_file
from contrastive.training.data_record import DATA_RECORD
from contrastive.training.last_checkpoint import SaveLastCheckpoint
from contrastive.training.resume import LAST_CHECKPOINT, resolve_resume
from contrastive.training.train import train


def logged_rates(run_dir: Path) -> dict[int, float]:
    """``step: lr`` of every ``metrics.csv`` row that logged a learning rate."""
    with open(run_dir / "metrics.csv", newline="") as file:
        return {int(row["step"]): float(row["lr"]) for row in csv.DictReader(file) if row["lr"]}


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if text in record.getMessage()]


@pytest.fixture
def own_images(tiny_images: Path, tmp_path: Path) -> Path:
    """A copy of the tiny images that a test may move or change."""
    return Path(shutil.copytree(tiny_images, tmp_path / "images"))


def test_more_epochs_on_resume_extend_the_schedule(
    tiny_config: TrainConfig, caplog: pytest.LogCaptureFixture
) -> None:
    train(tiny_config)  # 4 steps: the last one at the end rate
    with (
        caplog.at_level(logging.INFO, logger="contrastive.training.module"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        train(tiny_config.with_overrides(epochs=3), resume=True)
    # Before: the 8 added steps ran at the end rate, Lightly warning twice per step.
    assert not [w for w in caught if "exceeds max_steps" in str(w.message)]
    (line,) = messages(caplog, "learning-rate schedule")
    assert line.startswith("learning-rate schedule extended: 4 -> 12 steps (from step 4")
    rates = logged_rates(Path(tiny_config.out))
    peak = max(rates.values())
    assert rates[3] < 0.01 * peak  # the first run's end
    assert rates[7] > 0.1 * peak  # the added epochs train (the 12-step cosine)
    assert rates[11] == pytest.approx(rates[3])  # and end at the same end rate


def test_a_run_whose_last_checkpoint_came_at_its_end_is_extended_exactly(
    tiny_config: TrainConfig, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A budget run writes last.ckpt at most every 30 s at epoch ends, and when training
    # ends; that one recorded the next epoch as one further than it was: a 417-step run
    # resumed with --max-steps 800 was scheduled to 799, and Lightly warned at 760 and 800.
    monkeypatch.setattr(SaveLastCheckpoint, "on_train_epoch_end", lambda *_args: None)
    one_batch = tiny_config.with_overrides(batch_size=32, checkpoint_every_n_epochs=None)
    train(one_batch.with_overrides(max_steps=4, epochs=4))
    with (
        caplog.at_level(logging.INFO, logger="contrastive.training.module"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        train(one_batch.with_overrides(max_steps=8, epochs=8), resume=True)
    assert not [w for w in caught if "exceeds max_steps" in str(w.message)]
    (line,) = messages(caplog, "learning-rate schedule")
    assert line.startswith("learning-rate schedule extended: 4 -> 8 steps (from step 4")


def test_resume_with_data_continues_on_the_moved_folder(
    tiny_config: TrainConfig, own_images: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_config.with_overrides(data=str(own_images))
    train(config)
    moved = own_images.rename(own_images.parent / "moved")
    run_dir = Path(config.out)

    with pytest.raises(ContrastiveError, match="pass their folder with --resume --data FOLDER"):
        train(config.with_overrides(epochs=2), resume=True)
    with caplog.at_level(logging.INFO, logger="contrastive.training"):
        train(config.with_overrides(epochs=2, data=str(moved)), resume=True)

    (line,) = messages(caplog, "--resume --data")
    assert line == f"--resume --data: the run continues on {moved} instead of {own_images}"
    assert not messages(caplog, "ignored")  # before: data was ignored, then the run failed
    assert not messages(caplog, "data changed")  # the same images, moved
    assert load_config_file(run_dir / "config.yaml")["data"] == str(moved)
    assert logged_rates(run_dir).keys() == {3, 7}


def test_resume_warns_when_the_folder_changed_since_the_checkpoint(
    tiny_config: TrainConfig, own_images: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_config.with_overrides(data=str(own_images))
    train(config)
    for path in sorted((own_images / "a").iterdir())[:4]:
        path.unlink()
    rng = np.random.default_rng(1)
    for index in range(6):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(own_images / "b" / f"new{index}.png")

    with caplog.at_level(logging.WARNING):
        train(config.with_overrides(epochs=2), resume=True)
    # The health measures go on (the restored neighbour lists were of the old sample).
    assert not messages(caplog, "health measurement")
    (line,) = messages(caplog, "data changed")
    assert "the data changed since the checkpoint: 4 removed, 6 added (32 -> 34 images)" in line
    assert str(Path(config.out) / DATA_RECORD) in line

    # The run now records the new list: resuming again says nothing.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="contrastive.training"):
        train(config.with_overrides(epochs=3), resume=True)
    assert not messages(caplog, "data changed")


def test_a_run_without_a_data_record_resumes_without_a_warning(
    tiny_config: TrainConfig, own_images: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_config.with_overrides(data=str(own_images))
    train(config)
    record = Path(config.out) / DATA_RECORD
    record.unlink()  # a run from before the record
    next(iter((own_images / "a").iterdir())).unlink()  # 31 images: 3 steps per epoch
    with (
        caplog.at_level(logging.INFO),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        train(config.with_overrides(epochs=2), resume=True)
    assert not messages(caplog, "data changed")
    assert record.is_file()
    # The schedule ends where the run does: a 4-step epoch, then a 3-step one (Lightning's
    # estimate, 2 x 3 = 6, had the last step past the schedule's end).
    (line,) = messages(caplog, "learning-rate schedule")
    assert line.startswith("learning-rate schedule extended: 4 -> 7 steps")
    assert not [w for w in caught if "exceeds max_steps" in str(w.message)]


def saved_run(tmp_path: Path, **settings: object) -> TrainConfig:
    """A run folder with a config and a (dummy) last checkpoint, enough for resolve_resume."""
    config = TrainConfig(data=str(tmp_path / "images"), out=str(tmp_path / "run"), **settings)
    (tmp_path / "run" / LAST_CHECKPOINT).parent.mkdir(parents=True)
    (tmp_path / "run" / LAST_CHECKPOINT).write_bytes(b"")
    (tmp_path / "run" / "config.yaml").write_text(dump_config(config))
    return config


def test_a_step_limited_run_is_lengthened_by_max_steps_on_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A time budget's plan: 40 steps, 10 epochs of 4.
    saved = saved_run(tmp_path, time_budget="1m", max_steps=40, epochs=10)
    resumed, _ = resolve_resume(saved.with_overrides(max_steps=100), resume=True)
    assert (resumed.max_steps, resumed.epochs, resumed.time_budget) == (100, 25, "1m")
    assert not messages(caplog, "ignored")

    with caplog.at_level(logging.WARNING, logger="contrastive.training"):
        resumed, _ = resolve_resume(saved.with_overrides(epochs=30), resume=True)
    assert resumed.max_steps == 40
    (line,) = messages(caplog, "does not lengthen")
    assert line.startswith("--epochs 30 does not lengthen this run: it ends at step 40")
    assert "--max-steps" in line
