"""TrainConfig / OptimConfig: YAML round trip, unknown keys, validation, learning-rate scaling."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from contrastive.backbone_config import BackboneConfig
from contrastive.errors import ContrastiveError
from contrastive.losses import LossConfig
from contrastive.methods.config import MethodConfig
from contrastive.training.config import (
    OptimConfig,
    TrainConfig,
    dump_config,
    load_config_file,
)
from contrastive.views.config import view_preset

CUSTOM = TrainConfig(
    data="images/train",
    out="runs/moco",
    views=view_preset("cifar", noise_probability=0.3),
    backbone=BackboneConfig("resnet18_quarter", small_image_stem=True),
    method=MethodConfig("moco", projection_hidden_dim=64, queue_size=512, momentum_start=0.9),
    loss=LossConfig("distance", temperature=0.2, distance="euclidean"),
    optim=OptimConfig("lars", base_learning_rate=0.3, weight_decay=1e-6, warmup_fraction=0.1),
    batch_size=32,
    epochs=3,
    seed=7,
    num_workers=0,
    accelerator="cpu",
    devices="auto",
    precision="bf16-mixed",
    val_train="val/train",
    val_test="val/test",
    sync_batchnorm=True,
    view_pipeline="per_image",
    cache_images=False,
    cache_dir="/tmp/cache",
    stored_size=40,
    channels_last=False,
)


@pytest.mark.parametrize("config", [TrainConfig(), CUSTOM], ids=["default", "custom"])
def test_yaml_round_trip(config: TrainConfig) -> None:
    loaded = yaml.safe_load(dump_config(config))
    assert loaded == config.to_dict()
    assert TrainConfig.from_dict(loaded) == config


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(CUSTOM), encoding="utf-8")
    assert TrainConfig.from_dict(load_config_file(path)) == CUSTOM


def test_partial_dict_keeps_defaults() -> None:
    config = TrainConfig.from_dict({"batch_size": 64, "optim": {"weight_decay": 0.0}})
    assert config == TrainConfig(batch_size=64, optim=OptimConfig(weight_decay=0.0))


@pytest.mark.parametrize(
    ("values", "culprit"),
    [
        ({"batchsize": 64}, "batchsize"),
        ({"optim": {"lr": 0.1}}, "lr"),
        ({"method": {"queue": 10}}, "queue"),
        ({"loss": {"tau": 0.1}}, "tau"),
        ({"backbone": {"depth": 18}}, "depth"),
        ({"views": {"size": 32}}, "size"),
    ],
)
def test_unknown_keys_raise_naming_the_key(values: dict, culprit: str) -> None:
    with pytest.raises(ContrastiveError, match=rf"\b{culprit}\b"):
        TrainConfig.from_dict(values)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 1},
        {"epochs": 0},
        {"num_workers": -1},
        {"checkpoint_every_n_epochs": 0},
        {"monitor_every_n_epochs": 0},
        {"val_train": "only/one"},
        {"view_pipeline": "gpu"},
    ],
)
def test_invalid_train_config_raises(kwargs: dict) -> None:
    with pytest.raises(ContrastiveError):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"accelerator": "tpu9"}, "unknown accelerator 'tpu9'"),
        ({"precision": "bogus"}, "unknown precision 'bogus'"),
        ({"devices": "abc"}, "devices must be a count"),
        ({"devices": 0}, "devices must be a count"),
        ({"devices": -2}, "devices must be a count"),
        ({"devices": [0, -1]}, "devices must be a count"),
        ({"max_bad_fraction": -0.5}, "max_bad_fraction must be between 0 and 1, got -0.5"),
        ({"max_bad_fraction": 2}, "max_bad_fraction must be between 0 and 1, got 2"),
    ],
)
def test_hardware_and_bad_image_settings_are_checked_before_any_work(
    kwargs: dict, culprit: str
) -> None:
    with pytest.raises(ContrastiveError, match=culprit):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("devices", [1, 2, -1, "auto", "2", "0,1", "1,", [1, 3]])
def test_lightning_device_settings_are_accepted(devices: int | str | list[int]) -> None:
    assert TrainConfig(devices=devices).devices == devices


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"optimizer": "adam"}, "adam"),
        ({"base_learning_rate": 0.0}, "learning rate"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"warmup_fraction": 1.0}, "warmup_fraction"),
    ],
)
def test_invalid_optim_config_raises(kwargs: dict, culprit: str) -> None:
    with pytest.raises(ContrastiveError, match=culprit):
        OptimConfig(**kwargs)


@pytest.mark.parametrize(
    ("batch_size", "expected"), [(256, 0.12), (128, 0.06), (512, 0.24), (32, 0.015)]
)
def test_learning_rate_scales_linearly_with_batch(batch_size: int, expected: float) -> None:
    # 0.12 * batch / 256, i.e. Lightly's CIFAR-10 0.06 * batch / 128
    assert OptimConfig().learning_rate(batch_size) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("content", "culprit"),
    [
        ("- a\n- b\n", "mapping"),
        ("batch_size: [unclosed\n", "cannot parse"),
    ],
)
def test_bad_config_files_raise(tmp_path: Path, content: str, culprit: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ContrastiveError, match=culprit):
        load_config_file(path)


def test_missing_config_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ContrastiveError, match="not found"):
        load_config_file(tmp_path / "absent.yaml")
