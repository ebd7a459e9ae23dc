"""Backbones: feature widths, the small-image stem, plain-torchvision compatibility."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torchvision
from torch import nn

from contrastive.backbones import (
    BACKBONES,
    BackboneConfig,
    build_backbone,
    small_image_stem,
)
from contrastive.errors import ContrastiveError

# Final stage width: 512 for BasicBlock ResNets, 4 * 512 for Bottleneck (ResNet-50),
# 8 * base width for the narrow ResNet-18s (8 * 32, 8 * 16).
FEATURE_DIMS = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet18_half": 256,
    "resnet18_quarter": 128,
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: small forward passes on a shared machine only lose time to more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_backbone_has_an_expected_width() -> None:
    assert set(BACKBONES) == set(FEATURE_DIMS)


@pytest.mark.parametrize("small_stem", [False, True])
@pytest.mark.parametrize("name", sorted(FEATURE_DIMS))
def test_feature_width(name: str, small_stem: bool) -> None:
    model, feature_dim = build_backbone(BackboneConfig(name, small_image_stem=small_stem))
    assert feature_dim == FEATURE_DIMS[name]
    assert isinstance(model.fc, nn.Identity)
    with torch.no_grad():
        measured = model.eval()(torch.zeros(1, 3, 16, 16)).shape[1]
    assert measured == feature_dim


@pytest.mark.parametrize(
    ("name", "widths"),
    [("resnet18_half", [32, 64, 128, 256]), ("resnet18_quarter", [16, 32, 64, 128])],
)
def test_narrow_resnets_have_resnet18_depth_and_scaled_widths(name: str, widths: list[int]) -> None:
    model, _ = build_backbone(BackboneConfig(name))
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    assert [len(stage) for stage in stages] == [2, 2, 2, 2]
    assert [stage[-1].conv2.out_channels for stage in stages] == widths
    assert model.conv1.out_channels == widths[0]


@pytest.mark.parametrize("name", ["resnet18", "resnet18_quarter"])
def test_small_image_stem(name: str) -> None:
    model, _ = build_backbone(BackboneConfig(name, small_image_stem=True))
    assert model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (1, 1)
    assert model.conv1.padding == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    # 32 px stays 32 px into layer1 (the ImageNet stem divides by 4: 32 -> 8).
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    assert stem(torch.zeros(2, 3, 32, 32)).shape[-2:] == (32, 32)

    imagenet, _ = build_backbone(BackboneConfig(name))
    assert imagenet.conv1.kernel_size == (7, 7)
    assert imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)
    stem = nn.Sequential(imagenet.conv1, imagenet.bn1, imagenet.relu, imagenet.maxpool)
    assert stem(torch.zeros(2, 3, 32, 32)).shape[-2:] == (8, 8)


@pytest.mark.parametrize("small_stem", [False, True])
def test_resnet18_state_dict_loads_into_plain_torchvision(small_stem: bool) -> None:
    torch.manual_seed(0)
    model, _ = build_backbone(BackboneConfig("resnet18", small_image_stem=small_stem))
    with torch.no_grad():  # non-trivial batch-norm statistics, so the buffers matter too
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    plain = torchvision.models.resnet18()
    if small_stem:
        small_image_stem(plain)
    plain.fc = nn.Identity()
    plain.load_state_dict(model.state_dict(), strict=True)

    images = torch.randn(2, 3, 32, 32)
    model.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.equal(plain(images), model(images))


def test_unknown_backbone_raises() -> None:
    with pytest.raises(ContrastiveError, match="vgg16"):
        BackboneConfig("vgg16")
