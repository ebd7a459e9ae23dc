"""``contrastive.train`` from Python: a time budget plans the recipe as ``contrastive train
--time-budget`` does, keeping the settings given."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

import contrastive
from contrastive.backbone_config import BackboneConfig
from contrastive.errors import ContrastiveError
from contrastive.planning.planned_training import given_settings, planned_config
from contrastive.training.config import TrainConfig
from contrastive.views.config import ViewConfig

from .test_plan_run import flop_proportional_rate, write_images


@pytest.fixture
def no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    # The FLOP-proportional rate: the plan does not depend on how busy the machine is.
    monkeypatch.setattr("contrastive.planning.plan_run.measured_rate", flop_proportional_rate)


def test_given_settings_are_those_that_differ_from_the_defaults_or_are_kept() -> None:
    config = TrainConfig(
        data="x", out="y", time_budget="1m", batch_size=16, backbone=BackboneConfig("resnet34")
    )
    assert given_settings(config) == {"batch_size": 16, "backbone.name": "resnet34"}
    assert given_settings(TrainConfig(data="x", time_budget="1m")) == {}
    # ResNet-18 is the default: asked for by name, it is kept only where named in keep.
    resnet18 = TrainConfig(data="x", time_budget="1m", backbone=BackboneConfig("resnet18"))
    assert given_settings(resnet18) == {}
    assert given_settings(resnet18, keep=["backbone.name"]) == {"backbone.name": "resnet18"}
    with pytest.raises(ContrastiveError, match="keep names no field of TrainConfig: backbone"):
        given_settings(resnet18, keep=["backbone"])


def test_a_python_time_budget_plans_the_run_and_keeps_what_was_given(
    tmp_path: Path, no_probe: None, unconfigured: None, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    images = write_images(tmp_path / "images", 48, (40, 40))
    config = TrainConfig(
        data=str(images),
        out=str(tmp_path / "run"),
        time_budget="20s",
        batch_size=16,
        epochs=3,
        accelerator="cpu",
        cache_dir=str(tmp_path / "cache"),
    )
    # A fresh Python process: logging not configured, so the run's messages go through
    # show_messages (before: the plan was made before it and never printed).
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    result = contrastive.train(config)
    printed = capsys.readouterr().err
    assert "plan for 48 images" in printed
    assert "epochs is not used: time_budget 20s plans the number of steps" in printed

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
