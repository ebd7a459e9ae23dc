"""Recipes and ``contrastive train --recipe``: which base settings a run starts from."""

from __future__ import annotations

import pytest

from contrastive.cli import build_parser
from contrastive.cli.train import _recipe_config, config_from_args
from contrastive.recipes import (
    RECIPES,
    choose_recipe,
    cpu_budget_recipe,
    lightly_cifar10_protocol,
    without_recipe_stem,
)
from contrastive.training.config import TrainConfig


@pytest.mark.parametrize(
    ("name", "time_budget", "chosen"),
    [
        ("auto", "10m", "cpu-budget"),  # the base the planner fills in
        ("auto", None, "default"),
        ("lightly-cifar10", "10m", "lightly-cifar10"),
        ("default", "10m", "default"),
    ],
)
def test_choose_recipe(name: str, time_budget: str | None, chosen: str) -> None:
    assert choose_recipe(name, time_budget) == chosen


def test_choose_recipe_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        choose_recipe("fast", None)


def test_recipes_are_valid_configs() -> None:
    for make in RECIPES.values():
        config = make()
        assert TrainConfig.from_dict(config.to_dict()) == config
    assert cpu_budget_recipe().time_budget == "10m"
    protocol = lightly_cifar10_protocol()
    assert (protocol.batch_size, protocol.epochs, protocol.loss.temperature) == (512, 200, 0.5)
    assert protocol.backbone.small_image_stem


def train_config(*flags: str) -> TrainConfig:
    args = build_parser().parse_args(["train", "--data", "x", "--out", "y", *flags])
    return config_from_args(args, base=_recipe_config(args))


def test_time_budget_starts_from_the_cpu_recipe_before_planning() -> None:
    recipe = cpu_budget_recipe()
    config = train_config("--time-budget", "2m", "--accelerator", "cpu")
    assert (config.backbone, config.views, config.loss) == (
        recipe.backbone,
        recipe.views,
        recipe.loss,
    )
    assert config.time_budget == "2m"
    # Flags still win over the recipe.
    tuned = train_config("--time-budget", "2m", "--accelerator", "cpu", "--lr", "0.1")
    assert tuned.optim.base_learning_rate == 0.1
    assert tuned.optim.warmup_fraction == recipe.optim.warmup_fraction


def test_without_a_budget_or_with_recipe_default_the_plain_defaults_apply() -> None:
    assert train_config("--accelerator", "cpu").backbone == TrainConfig().backbone
    plain = train_config("--time-budget", "2m", "--accelerator", "cpu", "--recipe", "default")
    assert plain.backbone == TrainConfig().backbone
    assert plain.time_budget == "2m"


def test_an_explicit_input_size_drops_the_recipe_evaluation_size() -> None:
    recipe = cpu_budget_recipe().views
    assert (recipe.input_size, recipe.evaluation_size) == (24, 32)
    config = train_config("--time-budget", "2m", "--accelerator", "cpu", "--input-size", "64")
    assert (config.views.input_size, config.views.evaluation_size) == (64, 64)
    config = train_config(
        "--time-budget",
        "2m",
        "--accelerator",
        "cpu",
        "--input-size",
        "64",
        "--eval-input-size",
        "80",
    )
    assert config.views.evaluation_size == 80
    assert cpu_budget_recipe().resolved_stored_size == 32
    assert config.resolved_stored_size == 64


def test_a_recipes_stem_is_left_out_for_a_backbone_that_is_not_a_resnet() -> None:
    for name in ("convnext_tiny", "timm:resnet50d"):
        assert without_recipe_stem({"backbone.name": name}) == {
            "backbone.name": name,
            "backbone.small_image_stem": False,
            "backbone.stem_stride": 1,
        }
    # A stem the user gave is kept (BackboneConfig refuses it); ResNets keep the recipe's.
    given = {"backbone.name": "convnext_tiny", "backbone.small_image_stem": True}
    assert without_recipe_stem(given) == {**given, "backbone.stem_stride": 1}
    for values in ({"backbone.name": "resnet50"}, {"backbone.name": "no_such_net"}, {}):
        assert without_recipe_stem(values) == values
