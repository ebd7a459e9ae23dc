"""Two CPU processes (gloo) through the CLI: one time-budget plan, signals end both ranks.

Each run is a real ``contrastive train`` command line (``ddp_child.py``), because Lightning's
DDP launcher starts rank 1 by re-running it. A run that hangs is killed, with its process
group, after a generous timeout, and the test fails saying so.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("ddp_child.py")
#: Far beyond a healthy run: only a hang gets there.
HANG_SECONDS = 180


def ddp_args(images: Path, cache: Path, run_dir: Path, *extra: str) -> list[str]:
    """``contrastive train`` on two CPU processes: 32 images, 4 per rank, 4 steps per epoch."""
    return [
        "train",
        "--data",
        str(images),
        "--out",
        str(run_dir),
        "--recipe",
        "default",
        "--backbone",
        "resnet18_quarter",
        "--batch-size",
        "4",
        "--input-size",
        "32",
        "--num-workers",
        "0",
        "--cache-dir",
        str(cache),
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--precision",
        "32-true",
        *extra,
    ]


class DDPRun:
    """A two-process run in its own process group, its output collected in a file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._output = open(log, "w")  # noqa: SIM115 - closed in finish()
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(REPO_ROOT),
                "OMP_NUM_THREADS": "1",
                **(env or {}),
            },
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # rank 1 joins this group: one kill ends both
        )

    def finish(self) -> int:
        """Waits for the run; kills the group and fails if it hung."""
        try:
            code = self.process.wait(timeout=HANG_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            pytest.fail(f"the run hung and was killed after {HANG_SECONDS} s:\n{self.output()}")
        finally:
            self._output.close()
        # Rank 1 (started by rank 0) may end a moment after rank 0, but must end.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return code
            time.sleep(0.1)
        os.killpg(self.process.pid, signal.SIGKILL)
        pytest.fail(f"a rank outlived rank 0 by 30 s:\n{self.output()}")

    def output(self) -> str:
        """Everything both ranks printed."""
        return self.log.read_text()


def stopped_steps(output: str) -> dict[int, int]:
    """``{rank: global step}`` at which each rank's ``fit`` returned.

    The ranks write to one file, so a line of one may be glued to a line of the other:
    the patterns here are not anchored to line starts.
    """
    return {
        int(rank): int(step)
        for rank, step in re.findall(r"rank (\d) stopped at step (\d+)", output)
    }


def test_time_budget_run_plans_once_for_both_ranks(
    tiny_images: Path, decoded_cache: Path, tmp_path: Path
) -> None:
    # Rank 1's start-up and the plan's probe come out of the budget: in one fresh-clone
    # test run on 2 cores they took all of a 15 s budget, so the budget leaves room.
    budget = 25
    run_dir = tmp_path / "run"
    run = DDPRun(
        ddp_args(tiny_images, decoded_cache, run_dir, "--time-budget", f"{budget}s"),
        tmp_path / "run.log",
    )

    assert run.finish() == 0, run.output()
    output = run.output()
    steps = stopped_steps(output)
    assert set(steps) == {0, 1}, output
    assert steps[0] == steps[1], output
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["max_steps"] == steps[0]  # what --resume continues
    # One plan and one set of epoch lines (rank 0's), every epoch once.
    assert len(re.findall(r"time budget \S+: [\d.]+ s/step", output)) == 1, output
    epochs = re.findall(r"epoch (\d+)/\d+ \(step \d+\)", output)
    assert epochs and len(epochs) == len(set(epochs)), output
    # The clock starts when train() does (rank 1's start-up is inside the budget); the
    # final checkpoint and export take the reserve and a little more.
    took = float(re.search(r"train\(\) took ([\d.]+) s", output).group(1))
    assert took < budget + 5, output


def wait_for_file(path: Path, run: DDPRun) -> str:
    """The text of ``path`` once a rank wrote it; fails if the run ended first."""
    deadline = time.monotonic() + HANG_SECONDS
    while not path.exists() or not path.read_text():
        if run.process.poll() is not None or time.monotonic() > deadline:
            run.finish()
            pytest.fail(f"the run never reached its stall:\n{run.output()}")
        time.sleep(0.05)
    return path.read_text()


STALL_STEP = 6  # mid second epoch (4 steps per epoch)


@pytest.mark.parametrize(
    ("signum", "target"),
    [(signal.SIGTERM, "rank 1"), (signal.SIGTERM, "all"), (signal.SIGINT, "rank 1")],
)
def test_a_signal_stops_both_ranks_at_one_step_with_one_checkpoint(
    tiny_images: Path, decoded_cache: Path, tmp_path: Path, signum: int, target: str
) -> None:
    # Rank 1 stalls at step 6 (rank 0 waits for it inside the step's gradient all-reduce);
    # the signal reaches rank 1 alone, or every process as a scheduler's stop does.
    run_dir, ready = tmp_path / "run", tmp_path / "ready"
    args = ddp_args(tiny_images, decoded_cache, run_dir, "--epochs", "3", "--seed", "3")
    run = DDPRun(
        args,
        tmp_path / "run.log",
        env={"CONTRASTIVE_TEST_STALL": f"1:{STALL_STEP}", "CONTRASTIVE_TEST_READY": str(ready)},
    )
    rank1_pid = int(wait_for_file(ready, run))
    if target == "all":
        os.killpg(run.process.pid, signum)
    else:
        os.kill(rank1_pid, signum)

    code = run.finish()
    output = run.output()
    assert code == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum], output
    assert "Traceback" not in output, output
    # Both ranks finished the step in flight and stopped before the next one.
    assert stopped_steps(output) == {0: STALL_STEP + 1, 1: STALL_STEP + 1}, output
    name = signal.Signals(signum).name
    hint = (
        f"training stopped by {name} (at step {STALL_STEP + 1}, saved "
        f"{run_dir / 'checkpoints' / 'last.ckpt'}); "
        f"continue with `contrastive train --resume --out {run_dir}`"
    )
    assert output.count(hint) == 1, output  # rank 0 says it, once
    checkpoints = run_dir / "checkpoints"
    assert not list(checkpoints.glob(".*.tmp")), "a half-written checkpoint was left"
    state = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert state["global_step"] == STALL_STEP + 1

    if target == "rank 1" and signum == signal.SIGTERM:  # --resume continues on both ranks
        resumed = DDPRun(["train", "--resume", "--out", str(run_dir)], tmp_path / "resumed.log")
        assert resumed.finish() == 0, resumed.output()
        assert stopped_steps(resumed.output()) == {0: 12, 1: 12}, resumed.output()
