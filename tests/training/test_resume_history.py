"""``--resume`` keeps the run's history and its folder: ``metrics.csv`` rows from before the
checkpoint, a finished run left untouched, and a moved or copied run folder continued where
it is now.

Each run is the tiny configuration of ``conftest.py`` (32 images, 4 steps per epoch),
trained in this process.
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import pytest
import torch

from contrastive.cli import main
from contrastive.training.config import TrainConfig, load_config_file
from contrastive.training.metrics_history import HistoryCSVLogger
from contrastive.training.resume import LAST_CHECKPOINT
from contrastive.training.run_lock import LOCK_FILE
from contrastive.training.train import train


def logged_steps(run_dir: Path) -> list[int]:
    """The ``step`` of every ``metrics.csv`` row that logged a loss, in file order."""
    with open(run_dir / "metrics.csv", newline="") as file:
        return [int(row["step"]) for row in csv.DictReader(file) if row["loss"]]


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """``relative path: (size, mtime_ns)`` of every file under ``run_dir`` but the lock
    (which names the process training the folder, rewritten by each)."""
    return {
        str(path.relative_to(run_dir)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and path.name != LOCK_FILE
    }


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if text in record.getMessage()]


def test_resuming_a_finished_run_trains_nothing_and_touches_no_file(
    tiny_config: TrainConfig, caplog: pytest.LogCaptureFixture
) -> None:
    first = train(tiny_config)
    run_dir = Path(tiny_config.out)
    before = snapshot(run_dir)
    assert logged_steps(run_dir) == [3]

    with caplog.at_level(logging.INFO, logger="contrastive.training"):
        result = train(tiny_config, resume=True)

    # Before: metrics.csv was deleted, and config, record and backbone.pt rewritten.
    assert snapshot(run_dir) == before
    assert result.finished_at_step == 4
    (line,) = messages(caplog, "already finished")
    assert line == (
        f"{run_dir} is already finished at step 4: nothing to train; resume with a larger "
        f"--epochs to continue it (--epochs {2 * tiny_config.epochs} trains as long again)"
    )
    # The result holds the run's trained weights, as after training.
    for name, tensor in first.backbone.state_dict().items():
        assert torch.equal(result.backbone.state_dict()[name], tensor)


def test_the_cli_says_a_finished_run_is_finished_instead_of_trained(
    tiny_config: TrainConfig, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    train(tiny_config)
    capsys.readouterr()
    with caplog.at_level(logging.INFO):
        assert main(["train", "--resume", "--out", tiny_config.out]) == 0
    output = capsys.readouterr()
    assert "trained on" not in output.out + output.err  # before: "trained on 32 images"
    assert len(messages(caplog, "already finished at step 4")) == 1


def test_every_resume_keeps_the_earlier_rows_of_metrics_csv(tiny_config: TrainConfig) -> None:
    run_dir = Path(tiny_config.out)
    train(tiny_config)
    train(tiny_config, resume=True)  # finished: nothing to add
    train(tiny_config.with_overrides(epochs=2), resume=True)
    assert logged_steps(run_dir) == [3, 7]
    train(tiny_config.with_overrides(epochs=3), resume=True)
    # In order, each once (a health plot reads these rows).
    assert logged_steps(run_dir) == [3, 7, 11]


def test_rows_logged_after_the_checkpoint_are_not_kept_twice(tiny_config: TrainConfig) -> None:
    run_dir = Path(tiny_config.out)
    train(tiny_config)
    metrics = run_dir / "metrics.csv"
    with open(metrics, newline="") as file:
        rows = list(csv.DictReader(file))
    # What an interrupted run leaves: a row of a step after its last checkpoint (step 4),
    # which the resumed run trains and logs again.
    rows.append({**rows[0], "step": "5", "loss": "9.0"})
    with open(metrics, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    train(tiny_config.with_overrides(epochs=2), resume=True)
    assert logged_steps(run_dir) == [3, 7]


def test_the_history_logger_leaves_metrics_csv_until_it_saves_new_rows(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.csv"
    metrics.write_bytes(b"loss,step\r\n1.5,3\r\n1.25,7\r\n")
    logger = HistoryCSVLogger(tmp_path, resume_step=8)
    assert logger.experiment is not None  # Lightning's CSVLogger deletes the file here
    assert metrics.read_bytes() == b"loss,step\r\n1.5,3\r\n1.25,7\r\n"
    logger.log_metrics({"loss": 1.0, "lr": 0.5}, step=11)
    logger.save()
    logger.log_metrics({"loss": 0.5, "lr": 0.25}, step=15)
    logger.save()
    assert metrics.read_bytes() == (
        b"loss,lr,step\r\n1.5,,3\r\n1.25,,7\r\n1.0,0.5,11\r\n0.5,0.25,15\r\n"
    )


def test_a_moved_run_folder_is_resumed_where_it_is(
    tiny_config: TrainConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train(tiny_config)
    old = Path(tiny_config.out)
    moved = old.rename(tmp_path / "moved")

    with caplog.at_level(logging.INFO, logger="contrastive.training"):
        result = train(tiny_config.with_overrides(out=str(moved), epochs=2), resume=True)

    # Before: the run was re-created at its old path and the moved checkpoint left behind.
    assert not old.exists()
    assert result.run_dir == moved
    assert torch.load(moved / LAST_CHECKPOINT, weights_only=True)["global_step"] == 8
    assert load_config_file(moved / "config.yaml")["out"] == str(moved)
    assert logged_steps(moved) == [3, 7]
    (line,) = messages(caplog, "the --out given")
    assert (
        line
        == f"--resume: the run continues in {moved}, the --out given (its config.yaml names {old})"
    )


def test_a_copied_run_folder_is_resumed_in_the_copy_only(tiny_config: TrainConfig) -> None:
    train(tiny_config)
    original = Path(tiny_config.out)
    copy = Path(shutil.copytree(original, original.parent / "copy"))
    before = snapshot(original)

    train(tiny_config.with_overrides(out=str(copy), epochs=2), resume=True)

    assert snapshot(original) == before
    assert torch.load(copy / LAST_CHECKPOINT, weights_only=True)["global_step"] == 8


def test_a_relative_saved_out_does_not_follow_the_working_folder(
    tiny_config: TrainConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    train(tiny_config.with_overrides(out="run"))  # config.yaml records out: run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    train(tiny_config.with_overrides(out=str(tmp_path / "run"), epochs=2), resume=True)
    assert not (elsewhere / "run").exists()
    assert logged_steps(tmp_path / "run") == [3, 7]


def test_a_resumed_run_logs_its_learning_rate_and_speed(tiny_config: TrainConfig) -> None:
    run_dir = Path(tiny_config.out)
    train(tiny_config)
    train(tiny_config.with_overrides(epochs=3), resume=True)
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["loss"]]
    assert [int(row["step"]) for row in rows] == [3, 7, 11]
    # Before: the resumed rows had an empty lr and img_per_s (the module read them on
    # steps Lightning's restored counter did not write).
    assert all(float(row["lr"]) > 0 and float(row["img_per_s"]) > 0 for row in rows)
