"""``contrastive.train`` from Python: a time budget plans the recipe as ``contrastive train
--time-budget`` does, keeping the settings given."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import contrastive
from contrastive.backbones import BackboneConfig
from contrastive.errors import ContrastiveError
from contrastive.planning.planned_training import given_settings, planned_config
from contrastive.training.config import TrainConfig
from contrastive.views.config import ViewConfig

from .test_plan_run import flop_proportional_rate, write_images


@pytest.fixture
def no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    # The FLOP-proportional rate: the plan does not depend on how busy the machine is.
    monkeypatch.setattr("contrastive.planning.plan_run.measured_rate", flop_proportional_rate)


def test_given_settings_are_those_that_differ_from_the_defaults() -> None:
    config = TrainConfig(
        data="x", out="y", time_budget="1m", batch_size=16, backbone=BackboneConfig("resnet34")
    )
    assert given_settings(config) == {"batch_size": 16, "backbone.name": "resnet34"}
    assert given_settings(TrainConfig(data="x", time_budget="1m")) == {}


def test_a_python_time_budget_plans_the_run_and_keeps_what_was_given(
    tmp_path: Path, no_probe: None
) -> None:
    images = write_images(tmp_path / "images", 48, (40, 40))
    config = TrainConfig(
        data=str(images),
        out=str(tmp_path / "run"),
        time_budget="20s",
        batch_size=16,
        accelerator="cpu",
        cache_dir=str(tmp_path / "cache"),
    )
    result = contrastive.train(config)

    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    # Before: TrainConfig's own plain ResNet-18 at 224 px on 40 px images, no plan.
    assert saved["plan"] is not None
    assert saved["plan"]["batch_size"].startswith("16: set by you")
    assert saved["backbone"]["name"] == saved["plan"]["backbone"].split(":")[0]
    assert saved["views"]["input_size"] <= 64
    assert saved["max_steps"] >= 1
    assert (result.run_dir / "backbone.pt").is_file()


def test_plan_false_trains_the_config_as_it_is(tmp_path: Path, no_probe: None) -> None:
    images = write_images(tmp_path / "images", 16, (40, 40))
    config = TrainConfig(
        data=str(images), out=str(tmp_path / "run"), time_budget="20s", batch_size=8
    )
    assert planned_config(config).plan is not None
    unplanned = TrainConfig(
        data=str(images),
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=8,
        views=ViewConfig(input_size=32),
        backbone=BackboneConfig("resnet18_quarter"),
        accelerator="cpu",
        health_sample_size=0,
        projector_sample_size=0,
    )
    result = contrastive.train(unplanned, plan=False)
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["plan"] is None


def test_a_run_folder_in_use_is_refused_before_planning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = write_images(tmp_path / "images", 8, (40, 40))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("{}\n")
    monkeypatch.setattr(
        "contrastive.planning.plan_run.measured_rate",
        lambda *_a, **_k: pytest.fail("planned a run that cannot be written"),
    )
    config = TrainConfig(data=str(images), out=str(tmp_path / "run"), time_budget="1m")
    with pytest.raises(ContrastiveError, match="already holds config.yaml"):
        contrastive.train(config)
