"""Label-free health monitor: logged measures, warnings with remedies, keep-best, no effect
on training.

The tests calling ``train()`` need the health hook in ``contrastive/training/train.py``
(``trainer.callbacks.extend(health_callbacks(config, paths))``). Fixtures:
``tests/training/conftest.py``.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from contrastive.errors import ContrastiveError
from contrastive.training.config import TrainConfig
from contrastive.training.health import RunHealthWarning
from contrastive.training.health_rules import MEASURES, diagnose
from contrastive.training.train import train


class ConstantBackbone(nn.Module):
    """Maps every image to the same features: a fully collapsed encoder."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.features = nn.Parameter(torch.ones(dim))

    def forward(self, images: Tensor) -> Tensor:
        return self.features.expand(images.shape[0], -1)


def logged(run_dir: Path, name: str) -> list[tuple[int, float]]:
    """``(step, value)`` rows of one metric in ``metrics.csv``."""
    column = MEASURES[name].metric
    with open(run_dir / "metrics.csv", newline="") as file:
        return [
            (int(row["step"]), float(row[column]))
            for row in csv.DictReader(file)
            if row.get(column)
        ]


def point(step: int, rank: float = 40.0, stability: float = 0.5, **values: float) -> dict:
    return {
        "step": step,
        "rank": rank,
        "rank_projection": 30.0,
        "alignment": 0.5,
        "uniformity": -3.0,
        "sample_std": 0.08,
        "stability": stability,
        **values,
    }


def test_collapse_is_warned_with_remedies(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "contrastive.training.module.build_backbone", lambda config: (ConstantBackbone(16), 16)
    )

    with pytest.warns(
        RunHealthWarning, match=r"representation collapse at step \d+: feature"
    ) as caught:
        train(tiny_config.with_overrides(epochs=3, health_every_n_steps=4))

    messages = [str(w.message) for w in caught if w.category is RunHealthWarning]
    # Step 4, the first measurement, could be a network not trained yet; the later ones
    # confirm the collapse, which is warned once.
    assert len(messages) == 2 and messages[0].startswith("not spread yet at step 4")
    assert "lower learning rate" in messages[1] and "temperature" in messages[1]
    ranks = logged(tiny_config.run_dir, "rank")
    assert ranks and all(value == pytest.approx(1.0, abs=1e-3) for _step, value in ranks)


def test_healthy_short_run_is_silent_and_logs_every_measure(
    tiny_config: TrainConfig, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_config.with_overrides(epochs=2, health_every_n_steps=4)
    # 8 steps on noise images are barely spread (said by its own test); no other alarm.
    monkeypatch.setattr("contrastive.training.health_rules.WEAK_SPREAD_FRACTION", 0.0)

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        train(config)

    # The run says what the measures cost (two measurements: steps 4 and 8).
    assert re.search(r"label-free health: 2 measurements, [\d.]+ s = [\d.]+% of", caplog.text)

    assert not [w for w in caught if w.category is RunHealthWarning]
    # Measured at steps 4 and 8 (the end); the CSV step column is global_step - 1.
    assert [step for step, _value in logged(config.run_dir, "rank")] == [3, 7]
    for name in ("rank", "rank_projection", "alignment", "uniformity", "sample_std"):
        assert all(math.isfinite(value) for _step, value in logged(config.run_dir, name))
    (stability,) = logged(config.run_dir, "stability")  # needs a previous measurement
    assert 0 <= stability[1] <= 1


def test_health_measures_do_not_change_training(tiny_config: TrainConfig, same_weights) -> None:
    base = tiny_config.with_overrides(deterministic=True, epochs=2)
    plain = train(base.with_overrides(out=str(base.run_dir) + "-plain", health_sample_size=0))
    watched = train(base.with_overrides(health_every_n_steps=1, keep_best="rank"))

    assert logged(watched.run_dir, "rank")
    assert not (plain.run_dir / "metrics.csv").read_text().count("monitor/rank")
    same_weights(watched.backbone.state_dict(), plain.backbone.state_dict())


def test_measurements_over_the_cost_share_are_skipped_but_never_the_last(
    tiny_config: TrainConfig, caplog: pytest.LogCaptureFixture
) -> None:
    scheduled = tiny_config.with_overrides(epochs=4, health_every_n_steps=4)  # 16 steps
    cheap = scheduled.with_overrides(out=str(scheduled.run_dir) + "-cheap", health_max_share=1e-6)

    train(scheduled.with_overrides(health_max_share=1.0))
    with caplog.at_level(logging.INFO):
        train(cheap)

    # Steps 4, 8, 12 and 16 (the CSV's step column is global_step - 1).
    assert [step for step, _value in logged(scheduled.run_dir, "rank")] == [3, 7, 11, 15]
    # The first measurement has nothing to price it by; the last one is always taken.
    assert [step for step, _value in logged(cheap.run_dir, "rank")] == [3, 15]
    assert (
        "2 scheduled measurement(s) skipped to stay under 0.0001% (--health-max-share; the "
        "last measurement is always taken)" in caplog.text
    )


def test_a_failing_measurement_is_reported_and_the_run_finishes(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from contrastive.training import health

    calls = []
    real = health.measure_health

    def fails_after_the_first(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(health, "measure_health", fails_after_the_first)
    with caplog.at_level(logging.WARNING):
        result = train(
            tiny_config.with_overrides(epochs=4, health_every_n_steps=4, health_max_share=1.0)
        )

    # Measured at step 4, failed at step 8, not tried again (steps 12, 16): weights saved.
    assert len(calls) == 2
    assert (result.run_dir / "backbone.pt").is_file()
    failures = [r.getMessage() for r in caplog.records if "measurement at step" in r.getMessage()]
    assert len(failures) == 1
    assert "step 8 failed (RuntimeError: CUDA out of memory (simulated))" in failures[0]
    assert [step for step, _value in logged(result.run_dir, "rank")] == [3]


def test_keep_best_writes_the_best_checkpoint_and_backbone(tiny_config: TrainConfig) -> None:
    result = train(tiny_config.with_overrides(health_every_n_steps=4, keep_best="rank"))

    best = torch.load(result.run_dir / "backbone_best.pt", weights_only=True)
    assert best.keys() == result.backbone.state_dict().keys()
    checkpoint = torch.load(
        result.run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False
    )
    assert "state_dict" in checkpoint


def test_diagnose_plateau_only_with_much_of_the_run_left() -> None:
    flat = [
        point(step, rank=50.0 + 0.1 * index, stability=0.95)
        for index, step in enumerate((100, 200, 300, 400))
    ]

    (finding,) = diagnose(flat, feature_dim=128, projection_dim=128, total_steps=2000)
    assert finding.kind == "plateau" and "since step 100" in finding.message
    assert "stop early" in finding.message
    assert diagnose(flat, 128, 128, total_steps=450) == []  # the schedule's own end
    moving = [{**p, "stability": 0.5} for p in flat]
    assert diagnose(moving, 128, 128, total_steps=2000) == []


def test_diagnose_dimensional_collapse_and_collapse() -> None:
    (dimensional,) = diagnose([point(10, rank=3.0)], feature_dim=512, projection_dim=128)
    assert dimensional.kind == "dimensional_collapse" and "stronger views" in dimensional.message

    collapsed = [point(10, sample_std=0.001), point(20, sample_std=0.001)]
    (collapse,) = diagnose(collapsed, feature_dim=512, projection_dim=128)
    assert collapse.kind == "collapse" and "will not recover" in collapse.message
    # At the first measurement the same values may be a network not trained yet.
    (early,) = diagnose(collapsed[:1], feature_dim=512, projection_dim=128)
    assert early.kind == "not_spread" and "will not recover" not in early.message
    assert diagnose([point(10)], feature_dim=512, projection_dim=128) == []


def test_diagnose_weak_spread_against_the_untrained_range() -> None:
    # Measured: untrained networks -0.60 to -1.22 (128-d projections), trained runs <= -2.38.
    for untrained in (-0.07, -0.90, -1.22):
        (weak,) = diagnose([point(10, uniformity=untrained)], 512, 128)
        assert weak.kind == "weakly_spread" and "Train longer" in weak.message
        assert "above -1.77" in weak.message and "evenly give -3.94" in weak.message
    for trained in (-2.38, -3.0):
        assert diagnose([point(10, uniformity=trained)], 512, 128) == []
    # The bound scales with the sphere: on a circle, evenly spread points give only -1.58.
    assert diagnose([point(10, uniformity=-1.2)], 512, 2) == []
    assert diagnose([point(10, uniformity=-1.2)], 512, 0) == []  # width unknown


def test_a_tiny_sample_at_its_full_rank_is_not_collapse() -> None:
    # Two images span at most two dimensions: rank 1.98 is all they can show.
    two = [point(10, rank=1.98, rank_projection=1.93)] * 2
    assert {f.kind for f in diagnose(two, 128, 128)} == {"collapse"}  # size unknown
    assert diagnose(two, 128, 128, sample_size=2) == []
    (collapsed,) = diagnose([point(10, rank=1.0, sample_std=0.001)] * 2, 128, 128, sample_size=2)
    assert collapsed.kind == "collapse"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"keep_best": "accuracy"}, "unknown keep_best measure 'accuracy'"),
        ({"health_every_n_steps": -1}, "must be >= 0"),
        ({"health_max_share": 0.0}, "health_max_share must be in"),
        ({"keep_best": "rank", "health_sample_size": 0}, "keep_best needs"),
    ],
)
def test_bad_health_settings_get_one_line_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ContrastiveError, match=message) as error:
        TrainConfig(**overrides)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("max_steps", "measured"), [(5, [4]), (7, [3, 6])])
def test_no_scheduled_measurement_just_before_the_last(
    tiny_config: TrainConfig, max_steps: int, measured: list[int]
) -> None:
    # Every 4 steps: at step 4 of 5 the end (step 5) is under half an interval away, so only
    # the end is measured; at step 4 of 7 it is not (CSV steps are global_step - 1).
    config = tiny_config.with_overrides(epochs=2, max_steps=max_steps, health_every_n_steps=4)
    train(config)
    assert [step for step, _value in logged(config.run_dir, "rank")] == measured
