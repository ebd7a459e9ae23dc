"""Backbone settings read without torchvision: the names that answer from the tables agree
with torchvision, and the feature widths they give with the networks built."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision

from contrastive.backbone_config import (
    NARROW_SHAPES,
    RESNET_FEATURE_WIDTHS,
    BackboneConfig,
    is_builtin_backbone,
    is_torchvision_resnet,
    known_feature_width,
)
from contrastive.backbones import build_backbone
from contrastive.errors import ContrastiveError


def _built_width(config: BackboneConfig) -> int:
    with torch.device("meta"):  # the width without the memory of a ResNet-152
        return build_backbone(config)[1]


@pytest.mark.parametrize("name", sorted(RESNET_FEATURE_WIDTHS))
def test_the_resnet_table_is_torchvision_s(name: str) -> None:
    assert name in torchvision.models.list_models(module=torchvision.models)
    builder = torchvision.models.get_model_builder(name)
    assert builder.__module__ == torchvision.models.resnet.__name__


def test_every_torchvision_resnet_is_in_the_table() -> None:
    resnets = {
        name
        for name in torchvision.models.list_models(module=torchvision.models)
        if torchvision.models.get_model_builder(name).__module__
        == torchvision.models.resnet.__name__
    }
    assert resnets == set(RESNET_FEATURE_WIDTHS)


@pytest.mark.parametrize("small_stem", [False, True])
@pytest.mark.parametrize("name", sorted({*RESNET_FEATURE_WIDTHS, *NARROW_SHAPES}))
def test_a_known_width_is_the_built_network_s(name: str, small_stem: bool) -> None:
    config = BackboneConfig(name, small_image_stem=small_stem)
    assert known_feature_width(config) == _built_width(config)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "vit_b_16"])
def test_other_networks_have_no_known_width(name: str) -> None:
    assert known_feature_width(BackboneConfig(name)) is None
    assert is_builtin_backbone(name) and not is_torchvision_resnet(name)


def test_an_unknown_name_is_still_refused() -> None:
    assert not is_builtin_backbone("resnet19")
    with pytest.raises(ContrastiveError, match="unknown backbone 'resnet19'"):
        BackboneConfig("resnet19")


def test_resnet_settings_are_checked_without_torchvision() -> None:
    code = (
        "import sys\n"
        "from contrastive.backbone_config import BackboneConfig, known_feature_width\n"
        "for name in ('resnet18', 'resnet50', 'resnet10_quarter'):\n"
        "    print(known_feature_width(BackboneConfig(name, small_image_stem=True)))\n"
        "print('torchvision' in sys.modules, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["512", "2048", "128", "False", "False"]
