"""Backbones by name: any torchvision classification model, narrow ResNet-18s, timm models.

:func:`build_backbone` builds the network without pretrained weights (nothing is ever
downloaded), replaces its final classifier layer by ``Identity`` so the output is the pooled
feature vector, and reports that vector's width, read from the removed layer (no tables).

Names:

* any torchvision classification model (``torchvision.models.list_models(
  module=torchvision.models)``: ``resnet50``, ``convnext_tiny``, ``efficientnet_b0``,
  ``mobilenet_v3_small``, ``regnet_y_400mf``, ``vit_b_16``, ...), built by
  ``torchvision.models.get_model``. Its ``state_dict`` loads into the plain torchvision model
  whose classifier layer is replaced by ``Identity`` the same way (for the small-image stem,
  after replacing ``conv1``/``maxpool`` too, see :func:`small_image_stem`);
* ``resnet18_half`` / ``resnet18_quarter``: ResNet-18s with 1/2 and 1/4 of the channels, for
  small CPU budgets, and ``resnet10_half`` / ``resnet10_quarter``, the same widths with one
  residual block per stage instead of two, for the smallest (torchvision ``ResNet``
  modules);
* ``timm:NAME``: ``timm.create_model(NAME, pretrained=False, num_classes=0)``, with the
  optional extra ``pip install 'contrastive[timm]'``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torchvision
from torch import nn

from contrastive.backbone_config import (
    NARROW_SHAPES,
    TIMM_PREFIX,
    BackboneConfig,
    import_timm,
    torchvision_backbones,
)
from contrastive.errors import ContrastiveError

# Classifier layers are found by their output width: the models are built with this many
# classes (torchvision's default, so the state_dict matches the plain model's).
_NUM_CLASSES = 1000


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
    model.fc = nn.Linear(base_width * 8, _NUM_CLASSES)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


_NARROW_RESNETS: dict[str, Callable[[], nn.Module]] = {
    name: functools.partial(_narrow_resnet, width, layers)
    for name, (width, layers) in NARROW_SHAPES.items()
}


#: Every built-in name (torchvision classification models and the narrow ResNets); any
#: ``timm:NAME`` is accepted too when timm is installed.
BACKBONES = tuple(sorted({*torchvision_backbones(), *_NARROW_RESNETS}))


def small_image_stem(
    model: torchvision.models.ResNet, stride: int = 1
) -> torchvision.models.ResNet:
    """Replaces the ImageNet stem in place by a 3x3 conv (``stride``) without max-pool."""
    width = model.conv1.out_channels
    model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=stride, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def remove_classifier(model: nn.Module) -> tuple[str, int]:
    """Replaces the final classifier layer of a torchvision model by ``Identity`` in place.

    The classifier is the last ``Linear`` (or 1x1 ``Conv2d``, as in SqueezeNet) with
    ``_NUM_CLASSES`` outputs; whatever the model does around it (pooling, flattening,
    a hidden layer as in MobileNetV3's head) stays. Auxiliary classifiers (GoogLeNet,
    Inception v3) are removed, so training mode returns features too.

    Returns:
        ``(name, feature_dim)``: the replaced layer's name and its input width.

    Raises:
        ContrastiveError: If no such layer exists.
    """
    for auxiliary in ("aux1", "aux2", "AuxLogits"):
        if getattr(model, auxiliary, None) is not None:
            setattr(model, auxiliary, None)
    if hasattr(model, "aux_logits"):
        model.aux_logits = False
    found = [
        (name, module)
        for name, module in model.named_modules()
        if (isinstance(module, nn.Linear) and module.out_features == _NUM_CLASSES)
        or (isinstance(module, nn.Conv2d) and module.out_channels == _NUM_CLASSES)
    ]
    if not found:
        raise ContrastiveError(
            f"cannot find the classifier of {type(model).__name__}: no Linear layer with "
            f"{_NUM_CLASSES} outputs"
        )
    name, layer = found[-1]
    feature_dim = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, nn.Identity())
    return name, feature_dim


def builds_in_torchvision(config: BackboneConfig) -> bool:
    """Whether torchvision alone builds ``config``'s network (a torchvision name with its own
    stem), so that its plain ``state_dict`` loads without contrastive."""
    return config.name in torchvision_backbones() and not config.small_image_stem


def describe_architecture(config: BackboneConfig) -> str:
    """How to build ``config``'s network without contrastive, in torchvision (or timm) terms:
    what a service needs to load a plain ``state_dict`` export."""
    if config.name.startswith(TIMM_PREFIX):
        return f"timm.create_model({config.name[len(TIMM_PREFIX) :]!r}, num_classes=0)"
    if config.name in NARROW_SHAPES:
        width, layers = NARROW_SHAPES[config.name]
        built = (
            f"torchvision.models.ResNet(BasicBlock, {layers}) narrowed to stages of "
            f"{width}, {2 * width}, {4 * width}, {8 * width} channels: model.inplanes = "
            f"{width}; conv1 = Conv2d(3, {width}, 7, stride=2, padding=3, bias=False); bn1 = "
            f"BatchNorm2d({width}); layer1-4 = model._make_layer(BasicBlock, W, blocks, "
            f"stride) in turn with W = {width}, {2 * width}, {4 * width}, {8 * width}, strides "
            "1, 2, 2, 2"
        )
        classifier = "fc"
    else:
        built = f"torchvision.models.{config.name}(weights=None)"
        # Where the classifier sits differs by family (fc, classifier.3, heads.head...).
        classifier, _ = remove_classifier(torchvision.models.get_model(config.name, weights=None))
    if config.small_image_stem:
        built += (
            f"; then conv1 = Conv2d(3, conv1.out_channels, kernel_size=3, "
            f"stride={config.stem_stride}, padding=1, bias=False) and maxpool = Identity()"
        )
    return built + f"; then {classifier} = Identity() (the classifier removed)"


def build_backbone(config: BackboneConfig) -> tuple[nn.Module, int]:
    """Builds a randomly initialised backbone (never downloads weights).

    Returns:
        ``(backbone, feature_dim)``: the network maps ``(B, 3, H, W)`` images to
        ``(B, feature_dim)`` pooled features.
    """
    if config.name.startswith(TIMM_PREFIX):
        timm = import_timm(config.name)
        model = timm.create_model(config.name[len(TIMM_PREFIX) :], pretrained=False, num_classes=0)
        # Some timm heads have a hidden layer after pooling (head_hidden_size).
        return model, int(getattr(model, "head_hidden_size", None) or model.num_features)
    if config.name in _NARROW_RESNETS:
        model = _NARROW_RESNETS[config.name]()
    else:
        model = torchvision.models.get_model(config.name, weights=None)
    if config.small_image_stem:
        small_image_stem(model, config.stem_stride)
    _, feature_dim = remove_classifier(model)
    return model, feature_dim
