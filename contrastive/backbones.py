"""Backbones: torchvision ResNets built without pretrained weights, optional small-image stem.

Each builder returns the network with its classifier replaced by ``Identity``, so the
output is the pooled feature vector, and :func:`build_backbone` reports its width.
The returned module is a plain torchvision ``ResNet``: its ``state_dict`` loads into
``torchvision.models.resnet18()`` etc. without this package (for the small-image stem, after
replacing ``conv1``/``maxpool`` the same way, see :func:`small_image_stem`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torchvision
from torch import nn

from contrastive.errors import ContrastiveError


def _narrow_resnet(base_width: int, layers: list[int]) -> torchvision.models.ResNet:
    """A BasicBlock ResNet whose stages have ``base_width * (1, 2, 4, 8)`` channels."""
    model = torchvision.models.ResNet(torchvision.models.resnet.BasicBlock, layers)
    # torchvision's ResNet hard-codes 64 base channels; rebuild the stages narrower.
    model.inplanes = base_width
    model.conv1 = nn.Conv2d(3, base_width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(base_width)
    model.layer1 = model._make_layer(torchvision.models.resnet.BasicBlock, base_width, layers[0])
    model.layer2 = model._make_layer(
        torchvision.models.resnet.BasicBlock, base_width * 2, layers[1], stride=2
    )
    model.layer3 = model._make_layer(
        torchvision.models.resnet.BasicBlock, base_width * 4, layers[2], stride=2
    )
    model.layer4 = model._make_layer(
        torchvision.models.resnet.BasicBlock, base_width * 8, layers[3], stride=2
    )
    model.fc = nn.Linear(base_width * 8, 1000)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "resnet34": lambda: torchvision.models.resnet34(weights=None),
    "resnet50": lambda: torchvision.models.resnet50(weights=None),
    # Narrower ResNet-18s for small CPU budgets: same depth, fewer channels.
    "resnet18_half": lambda: _narrow_resnet(32, [2, 2, 2, 2]),
    "resnet18_quarter": lambda: _narrow_resnet(16, [2, 2, 2, 2]),
}

BACKBONES = tuple(_BUILDERS)


@dataclass(frozen=True)
class BackboneConfig:
    """Which backbone to build.

    Attributes:
        name: The network, a key of :data:`BACKBONES`.
        small_image_stem: Replace the 7x7/2 stem and max-pool by a 3x3/1 conv, as is
            usual for 32-64 px inputs (CIFAR); costs ~16x the FLOPs at the same input size.
    """

    name: str = "resnet18"
    small_image_stem: bool = False

    def __post_init__(self) -> None:
        if self.name not in _BUILDERS:
            raise ContrastiveError(
                f"unknown backbone {self.name!r}; choose one of {', '.join(BACKBONES)}"
            )


def small_image_stem(model: torchvision.models.ResNet) -> torchvision.models.ResNet:
    """Replaces the ImageNet stem in place by a 3x3 stride-1 conv without max-pool."""
    width = model.conv1.out_channels
    model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def build_backbone(config: BackboneConfig) -> tuple[nn.Module, int]:
    """Builds a randomly initialised backbone.

    Returns:
        ``(backbone, feature_dim)``: the network maps ``(B, 3, H, W)`` images to
        ``(B, feature_dim)`` pooled features.
    """
    model = _BUILDERS[config.name]()
    if config.small_image_stem:
        small_image_stem(model)
    feature_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model, feature_dim
