"""A run killed with SIGKILL resumes with --resume and ends with the weights of an unbroken run.

Runs are deterministic (``--deterministic``, fixed seed, one thread): the killed run loses
what followed its last checkpoint and redoes it. A kill while ``last.ckpt`` is being written
leaves the previous ``last.ckpt`` whole. Fixtures: ``tests/training/conftest.py``.
"""

from __future__ import annotations

import csv
import signal
from pathlib import Path

from contrastive.training.checkpoint_io import AtomicCheckpointIO

# 4 steps per epoch: step 6 lies in the middle of the second epoch.
MID_SECOND_EPOCH = 6


def logged_losses(run_dir: Path) -> list[tuple[str, str, str]]:
    """``(epoch, step, loss)`` of every row of ``metrics.csv`` that logged a loss."""
    with open(run_dir / "metrics.csv", newline="") as file:
        return [
            (row["epoch"], row["step"], row["loss"]) for row in csv.DictReader(file) if row["loss"]
        ]


def run_files(run_dir: Path) -> dict[Path, int]:
    """The modification time of each of the run's files, its hidden lock aside."""
    return {
        path: path.stat().st_mtime_ns
        for path in run_dir.rglob("*")
        if path.is_file() and path.name != ".contrastive-lock"
    }


def test_killed_mid_epoch_resumes_to_the_same_weights(
    training, reference_run, same_weights, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    child = training.start(run_dir, stall_at_step=MID_SECOND_EPOCH)
    child.wait_until_ready()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert child.send(signal.SIGKILL) == -signal.SIGKILL
    assert not (run_dir / "backbone.pt").exists()

    resumed = training.resume(run_dir)

    assert resumed.finish() == 0, resumed.output()
    same_weights(training.weights(run_dir), reference_run.weights())
    # metrics.csv keeps the rows logged before the kill, and the redone steps once.
    assert logged_losses(run_dir) == logged_losses(reference_run.run_dir)


def test_kill_while_writing_last_checkpoint_keeps_the_previous_one(
    training, reference_run, same_weights, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    # The second write of last.ckpt, at the end of epoch 2, is killed half-written.
    child = training.start(run_dir, stall_in_save=2)
    child.wait_until_ready()
    assert child.send(signal.SIGKILL) == -signal.SIGKILL
    assert any(path.name.startswith(".last.ckpt.") for path in checkpoints.iterdir())

    state = AtomicCheckpointIO().load_checkpoint(checkpoints / "last.ckpt")
    assert (state["epoch"], state["global_step"]) == (0, 4)

    resumed = training.resume(run_dir)

    assert resumed.finish() == 0, resumed.output()
    same_weights(training.weights(run_dir), reference_run.weights())
    assert not [path.name for path in checkpoints.iterdir() if path.name.startswith(".")]


def test_auto_resume_starts_continues_and_leaves_a_finished_run(
    training, reference_run, same_weights, tmp_path: Path
) -> None:
    # One command line for the first start and every restart (a preempted job, cron).
    run_dir = tmp_path / "run"
    child = training.start(run_dir, "--auto-resume", stall_at_step=MID_SECOND_EPOCH)
    child.wait_until_ready()
    assert child.send(signal.SIGKILL) == -signal.SIGKILL

    resumed = training.start(run_dir, "--auto-resume")

    assert resumed.finish() == 0, resumed.output()
    same_weights(training.weights(run_dir), reference_run.weights())
    assert logged_losses(run_dir) == logged_losses(reference_run.run_dir)
    written = run_files(run_dir)
    again = training.start(run_dir, "--auto-resume")
    assert again.finish() == 0, again.output()
    assert run_files(run_dir) == written  # the lock's holder aside, nothing rewritten


def test_auto_resume_starts_again_a_run_stopped_before_its_first_checkpoint(
    training, reference_run, same_weights, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    child = training.start(run_dir, "--auto-resume", stall_at_step=2)
    child.wait_until_ready()
    assert child.send(signal.SIGKILL) == -signal.SIGKILL
    assert (run_dir / "config.yaml").is_file()
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()

    restarted = training.start(run_dir, "--auto-resume")

    # Before: "already holds config.yaml; choose a new --out", on every restart.
    assert restarted.finish() == 0, restarted.output()
    same_weights(training.weights(run_dir), reference_run.weights())
    assert logged_losses(run_dir) == logged_losses(reference_run.run_dir)
