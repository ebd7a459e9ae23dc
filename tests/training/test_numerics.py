"""Numerical failures: a non-finite loss stops the run with one line; collapse is warned about.

Fixtures: ``tests/training/conftest.py``.
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from contrastive.training.collapse import RepresentationCollapseWarning
from contrastive.training.config import TrainConfig
from contrastive.training.health_rules import COLLAPSE_STD_METRIC
from contrastive.training.train import train


class ConstantBackbone(nn.Module):
    """Maps every image to the same features: a fully collapsed encoder."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.features = nn.Parameter(torch.ones(dim))

    def forward(self, images: Tensor) -> Tensor:
        return self.features.expand(images.shape[0], -1)


def logged_collapse_std(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [
            float(row[COLLAPSE_STD_METRIC])
            for row in csv.DictReader(file)
            if row[COLLAPSE_STD_METRIC]
        ]


def test_absurd_learning_rate_stops_with_one_line(training, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    child = training.start(run_dir, "--lr", "1e30")

    assert child.finish() == 2

    output = child.output()
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert re.fullmatch(
        r"error: loss became (nan|inf|-inf) at step \d+ \(epoch 0\); "
        r"try a lower learning rate \(--lr\)",
        errors[0],
    )
    assert not (run_dir / "backbone.pt").exists()


def test_collapsed_embeddings_are_logged_and_warned_once(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "contrastive.training.module.build_backbone", lambda config: (ConstantBackbone(16), 16)
    )

    with pytest.warns(
        RepresentationCollapseWarning, match=r"representation collapse at step 4"
    ) as caught:
        train(tiny_config)

    assert len([w for w in caught if w.category is RepresentationCollapseWarning]) == 1
    values = logged_collapse_std(tiny_config.run_dir)
    assert values and max(values) < 1e-3


def test_collapse_is_shown_under_the_console_s_warning_filters(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contrastive.console import quiet_third_party_logs

    monkeypatch.setattr(
        "contrastive.training.module.build_backbone", lambda config: (ConstantBackbone(16), 16)
    )
    # The command line hides Lightning's warnings; the collapse warning, raised from inside
    # Lightning's hook, had been hidden with them (seen only with -v).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_third_party_logs()
        train(tiny_config)
    assert [w for w in caught if w.category is RepresentationCollapseWarning]


def test_healthy_embeddings_do_not_warn(tiny_config: TrainConfig) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(tiny_config)

    assert not [w for w in caught if w.category is RepresentationCollapseWarning]
    # Random embeddings of width d have a normalised std near 1/sqrt(d).
    healthy = 1 / math.sqrt(tiny_config.method.projection_output_dim)
    values = logged_collapse_std(tiny_config.run_dir)
    assert values and all(0.3 * healthy < value < 2 * healthy for value in values)


def test_non_finite_loss_stops_the_run_within_the_check_interval(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loss is checked on the device every log_every_n_steps steps (4 here: one epoch),
    # not read by the host each step; the error still names the first bad step.
    from contrastive.training import module as module_lib

    build_method, nan_from, interval, losses = module_lib.build_method, 5, 4, []

    def build_poisoned(*args, **kwargs):
        method = build_method(*args, **kwargs)
        training_loss = method.training_loss

        def poisoned(views, progress):
            loss = training_loss(views, progress)
            losses.append(loss)
            return loss * float("nan") if len(losses) > nan_from else loss

        method.training_loss = poisoned
        return method

    monkeypatch.setattr(module_lib, "build_method", build_poisoned)
    config = tiny_config.with_overrides(epochs=5)  # 20 steps

    with pytest.raises(module_lib.NonFiniteLossError) as raised:
        train(config)

    assert str(raised.value) == (
        f"loss became nan at step {nan_from} (epoch 1); try a lower learning rate (--lr)"
    )
    assert nan_from < len(losses) <= nan_from + interval
    assert not (config.run_dir / "backbone.pt").exists()


def test_a_final_loss_near_zero_is_named_memorised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    from types import SimpleNamespace

    from contrastive.training.train import _warn_if_memorised

    trainer = SimpleNamespace(is_global_zero=True)
    # 50 CIFAR-10 photos ended at 0.29 and beat raw pixels; one low batch after a higher
    # loss is not memorised (the warning read the last value alone, health the last three).
    for losses, named in (([0.4, 0.3, 0.29], False), ([0.5, 0.05, 0.015], False),
                          ([0.08, 0.05, 0.015], True)):  # fmt: skip
        rows = "".join(f"{step},0,{loss}\n" for step, loss in enumerate(losses))
        (tmp_path / "metrics.csv").write_text("step,epoch,loss\n" + rows)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            _warn_if_memorised(trainer, tmp_path)
        assert ("the training loss fell to 0.015" in caplog.text) == named, losses
        assert ("(memorised)" in caplog.text) == named
