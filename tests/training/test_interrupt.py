"""Ctrl-C (SIGINT) during training: a checkpoint, one line saying how to resume, exit 130.

The first Ctrl-C lets the step in flight finish and saves the state before the next one, so
the resumed run ends with the weights of an unbroken run. A second Ctrl-C stops at once and
leaves the last periodic checkpoint. SIGTERM (a scheduler's stop) saves at the end of the
step, exit 143. Fixtures: ``tests/training/conftest.py``.
"""

from __future__ import annotations

import csv
import shlex
import signal
from pathlib import Path

import pytest

from contrastive.training.checkpoint_io import AtomicCheckpointIO

# 4 steps per epoch: step 6 lies in the middle of the second epoch.
MID_SECOND_EPOCH = 6


def assert_one_line_resume_message(
    output: str, run_dir: Path, saved: bool, signal_name: str = "SIGINT"
) -> None:
    assert "Traceback" not in output
    message = output.strip().splitlines()[-1]
    assert message.startswith(f"training stopped by {signal_name}")
    # Quoted for the shell: a folder with a space pastes as one argument.
    quoted = shlex.quote(str(run_dir))
    assert message.endswith(f"continue with `contrastive train --resume --out {quoted}`")
    assert ("saved" in message) == saved, message


def test_ctrl_c_saves_and_resumes_to_the_same_weights(
    training, reference_run, same_weights, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    child = training.start(run_dir, stall_at_step=MID_SECOND_EPOCH)
    child.wait_until_ready()

    assert child.send(signal.SIGINT) == 130

    assert_one_line_resume_message(child.output(), run_dir, saved=True)
    state = AtomicCheckpointIO().load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    # The stalled step was completed, the next one not begun.
    assert state["global_step"] == MID_SECOND_EPOCH + 1
    assert not (run_dir / "backbone.pt").exists()

    resumed = training.resume(run_dir)

    assert resumed.finish() == 0, resumed.output()
    same_weights(training.weights(run_dir), reference_run.weights())
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["loss"]]
    assert [int(row["step"]) for row in rows] == [3, 7, 11]
    # Before: [3, 11] with no lr or img_per_s at 11 (in truth step 10): the restored run's
    # step count for writing rows was one ahead of the steps the module logged on.
    assert all(float(row["lr"]) > 0 for row in rows)
    # Step 7 is the resumed run's first: no speed measured yet.
    assert float(rows[2]["img_per_s"]) > 0


def test_second_ctrl_c_stops_at_once_keeping_the_last_checkpoint(
    training, reference_run, same_weights, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    # Hangs while writing last.ckpt at the end of epoch 2: only a second Ctrl-C ends it.
    child = training.start(run_dir, stall_in_save=2)
    child.wait_until_ready()
    child.signal(signal.SIGINT)
    child.wait_until_interrupt_seen()

    assert child.send(signal.SIGINT) == 130

    assert_one_line_resume_message(child.output(), run_dir, saved=False)
    state = AtomicCheckpointIO().load_checkpoint(checkpoints / "last.ckpt")
    assert (state["epoch"], state["global_step"]) == (0, 4)
    # The interrupted write removed its temporary file.
    assert not [path.name for path in checkpoints.iterdir() if path.name.startswith(".")]

    resumed = training.resume(run_dir)

    assert resumed.finish() == 0, resumed.output()
    same_weights(training.weights(run_dir), reference_run.weights())


@pytest.mark.parametrize(
    ("stop", "code", "folder"),
    [
        (signal.SIGTERM, 143, "run"),
        # An ssh session dropped without nohup: the run used to die with its last periodic
        # checkpoint only. The folder's space checks the hint's shell quoting.
        (signal.SIGHUP, 129, "my run"),
    ],
)
def test_sigterm_and_hang_up_save_at_the_step_end_and_resume_to_the_same_weights(
    training, reference_run, same_weights, tmp_path: Path, stop, code: int, folder: str
) -> None:
    run_dir = tmp_path / folder
    # Under nohup (as a CI job may run) SIGHUP is ignored and children inherit that: a run
    # then rightly trains on. The child starts with the default a terminal gives.
    previous = signal.signal(stop, signal.SIG_DFL)
    try:
        child = training.start(run_dir, stall_at_step=MID_SECOND_EPOCH)
    finally:
        signal.signal(stop, previous)
    child.wait_until_ready()

    assert child.send(stop) == code

    assert_one_line_resume_message(child.output(), run_dir, saved=True, signal_name=stop.name)
    state = AtomicCheckpointIO().load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert state["global_step"] == MID_SECOND_EPOCH + 1

    resumed = training.resume(run_dir)

    assert resumed.finish() == 0, resumed.output()
    same_weights(training.weights(run_dir), reference_run.weights())
