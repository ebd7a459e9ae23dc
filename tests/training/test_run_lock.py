"""One training per run folder: a second process is refused while the first holds it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contrastive.errors import ContrastiveError
from contrastive.training.config import TrainConfig
from contrastive.training.run_lock import LOCK_FILE, hold_run_folder
from contrastive.training.train import train

# Holds the lock in another process until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from contrastive.training.run_lock import hold_run_folder
with hold_run_folder(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen]]:
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    yield run_dir, holder
    holder.communicate("")


def test_a_folder_held_by_another_process_is_refused_naming_it(held) -> None:
    run_dir, holder = held
    with pytest.raises(ContrastiveError) as error, hold_run_folder(run_dir):
        pytest.fail("the lock was taken twice")
    message = str(error.value)
    assert message.startswith(f"{run_dir} is being trained by process {holder.pid} on ")
    assert "wait for it to finish (then --resume continues it), or choose another --out" in message
    # Once the holder is gone, however it ended, the folder is free: no stale lock.
    holder.kill()
    holder.wait()
    with hold_run_folder(run_dir):
        assert (run_dir / LOCK_FILE).read_text().startswith("process ")


def test_training_into_a_held_folder_stops_before_touching_it(
    held, tiny_config: TrainConfig
) -> None:
    run_dir, _ = held
    config = tiny_config.with_overrides(out=str(run_dir))
    with pytest.raises(ContrastiveError, match="is being trained by process"):
        train(config)
    with pytest.raises(ContrastiveError, match="is being trained by process"):
        train(config, resume=True)
    assert [path.name for path in run_dir.iterdir()] == [LOCK_FILE]


def test_the_command_refuses_a_held_folder_before_planning(
    held, tiny_images: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from contrastive.cli import main

    run_dir, holder = held
    args = ["train", "--data", str(tiny_images), "--out", str(run_dir), "--time-budget", "30s"]
    with caplog.at_level(logging.INFO):
        assert main(args) == 2
    assert f"is being trained by process {holder.pid}" in capsys.readouterr().err
    assert "plan for" not in caplog.text  # refused before the planner's probes (seconds)
