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
import types
from collections.abc import Callable
from dataclasses import dataclass

import torchvision
from torch import nn

from contrastive.errors import ContrastiveError

TIMM_PREFIX = "timm:"

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


# Narrower ResNet-18s for small CPU budgets (same depth, fewer channels), and ResNet-10s
# (one block per stage) for the smallest budgets.
#: name -> (channels of the first stage, blocks per stage).
_NARROW_SHAPES: dict[str, tuple[int, list[int]]] = {
    "resnet18_half": (32, [2, 2, 2, 2]),
    "resnet18_quarter": (16, [2, 2, 2, 2]),
    "resnet10_half": (32, [1, 1, 1, 1]),
    "resnet10_quarter": (16, [1, 1, 1, 1]),
}
_NARROW_RESNETS: dict[str, Callable[[], nn.Module]] = {
    name: functools.partial(_narrow_resnet, width, layers)
    for name, (width, layers) in _NARROW_SHAPES.items()
}


@functools.cache
def torchvision_backbones() -> tuple[str, ...]:
    """Every torchvision classification model name (detection, video... models excluded)."""
    return tuple(torchvision.models.list_models(module=torchvision.models))


#: Every built-in name (torchvision classification models and the narrow ResNets); any
#: ``timm:NAME`` is accepted too when timm is installed.
BACKBONES = tuple(sorted({*torchvision_backbones(), *_NARROW_RESNETS}))

HOW_TO_LIST = (
    "use a torchvision classification model (see torchvision.models.list_models("
    "module=torchvision.models)), resnet18_half, resnet18_quarter, resnet10_half, "
    "resnet10_quarter, or timm:NAME (see timm.list_models(); needs pip install "
    "'contrastive[timm]')"
)


@dataclass(frozen=True)
class BackboneConfig:
    """Which backbone to build.

    Attributes:
        name: The network: any torchvision classification model (``resnet50``,
            ``convnext_tiny``, ``efficientnet_b0``, ``vit_b_16``...), ``resnet18_half``,
            ``resnet18_quarter``, ``resnet10_half``, ``resnet10_quarter``, or ``timm:NAME``
            (needs the timm extra).
        small_image_stem: Replace the 7x7/2 stem and max-pool by a 3x3/1 conv, as is
            usual for 32-64 px inputs (CIFAR); costs ~16x the FLOPs at the same input size.
            ResNets only.
        stem_stride: Stride of the small-image stem's conv: 2 halves the feature maps, so
            views of twice the side cost about what the stride-1 stem costs at half the side
            (more image detail for the same compute).
    """

    name: str = "resnet18"
    small_image_stem: bool = False
    stem_stride: int = 1

    def __post_init__(self) -> None:
        check_backbone_name(self.name)
        if self.small_image_stem and not is_torchvision_resnet(self.name):
            raise ContrastiveError(
                f"small_image_stem applies to torchvision ResNets (resnet18, resnet50, "
                f"resnext50_32x4d, resnet18_quarter...), not {self.name}"
            )
        if self.stem_stride not in (1, 2):
            raise ContrastiveError(f"stem_stride must be 1 or 2, got {self.stem_stride}")
        if self.stem_stride != 1 and not self.small_image_stem:
            raise ContrastiveError("stem_stride applies to the small-image stem only")


def check_backbone_name(name: str) -> None:
    """Raises a one-line :class:`ContrastiveError` for a name :func:`build_backbone` can't build."""
    if name.startswith(TIMM_PREFIX):
        timm = _import_timm(name)
        if not timm.is_model(name[len(TIMM_PREFIX) :]):
            raise ContrastiveError(f"unknown timm model {name!r}; see timm.list_models()")
    elif name not in BACKBONES:
        raise ContrastiveError(f"unknown backbone {name!r}; {_timm_suggestion(name)}{HOW_TO_LIST}")


def _timm_suggestion(name: str) -> str:
    """``did you mean timm:NAME?`` where an installed timm has a model of that name."""
    try:
        import timm
    except ImportError:  # the extra is optional; HOW_TO_LIST says how to add it
        return ""
    return f"did you mean {TIMM_PREFIX}{name}? " if timm.is_model(name) else ""


def _import_timm(name: str) -> types.ModuleType:
    try:
        import timm
    except ImportError:
        raise ContrastiveError(
            f"backbone {name} needs timm: pip install 'contrastive[timm]'"
        ) from None
    return timm


def is_torchvision_resnet(name: str) -> bool:
    if name in _NARROW_RESNETS:
        return True
    if name.startswith(TIMM_PREFIX):
        return False
    builder = torchvision.models.get_model_builder(name)
    return builder.__module__ == torchvision.models.resnet.__name__


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
    if config.name in _NARROW_SHAPES:
        width, layers = _NARROW_SHAPES[config.name]
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
        timm = _import_timm(config.name)
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
