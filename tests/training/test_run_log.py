"""``RUN/train.log``: a run's messages and warnings, and how it ended, beside its files."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from contrastive.errors import ContrastiveError
from contrastive.training.config import TrainConfig
from contrastive.training.run_log import RUN_LOG, run_log
from contrastive.training.train import train


def test_a_run_and_its_resume_append_their_messages_and_how_they_ended(
    tiny_config: TrainConfig, caplog: pytest.LogCaptureFixture
) -> None:
    # The messages the run prints (the command line shows INFO): pytest's root shows less.
    caplog.set_level(logging.INFO, logger="contrastive")
    train(tiny_config)
    log = Path(tiny_config.out) / RUN_LOG
    first = log.read_text().splitlines()
    assert first[0].endswith(")") and "== " in first[0] and "(contrastive " in first[0]
    assert any("epoch 1/1" in line for line in first), first
    # What besides config.yaml decides the numbers: the precision used, threads, versions.
    (environment,) = [line for line in first if " environment: " in line]
    assert "precision 32-true, 1 CPU thread, torch " in environment
    assert "lightly " in environment and "pytorch-lightning " in environment
    assert first[-1].endswith(" finished")
    train(tiny_config.with_overrides(epochs=2), resume=True)
    second = log.read_text().splitlines()
    assert second[: len(first)] == first  # appended, never rewritten
    assert sum("== " in line for line in second) == 2 and second[-1].endswith(" finished")


def test_the_plan_warnings_and_an_error_are_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="contrastive")
    plan = {"backbone": "quarter-width ResNet-10: 62 passes"}
    with pytest.raises(ContrastiveError), run_log(tmp_path, plan):
        logging.getLogger("contrastive.training").info("epoch 3/9")
        logging.getLogger("contrastive.training").warning("barely spread at step 4")
        logging.getLogger("elsewhere").warning("not a run's message")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("12 images skipped", stacklevel=1)
        raise ContrastiveError("loss became nan at step 4")
    lines = [line.split(" ", 2)[2] for line in (tmp_path / RUN_LOG).read_text().splitlines()]
    assert lines[1:] == [
        "plan: backbone: quarter-width ResNet-10: 62 passes",
        "epoch 3/9",
        "warning: barely spread at step 4",
        "warning: 12 images skipped",
        "error: loss became nan at step 4",
    ]
    # Warnings are shown as before once the run is over.
    assert warnings.showwarning.__name__ != "show_and_log"
