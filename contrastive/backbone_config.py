"""Which backbone to build: :class:`BackboneConfig` and the checks of its name.

Apart from :mod:`contrastive.backbones`, which builds the networks, so that reading a run's
settings (``train --help``, ``contrastive health RUN``) does not import torchvision (2.5 s
on 2 cores): the names of the narrow ResNets and torchvision's ResNets answer without it;
other names import it to be checked.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass

from contrastive.errors import ContrastiveError

TIMM_PREFIX = "timm:"

# Narrower ResNet-18s for small CPU budgets (same depth, fewer channels), and ResNet-10s
# (one block per stage) for the smallest budgets.
#: name -> (channels of the first stage, blocks per stage).
NARROW_SHAPES: dict[str, tuple[int, list[int]]] = {
    "resnet18_half": (32, [2, 2, 2, 2]),
    "resnet18_quarter": (16, [2, 2, 2, 2]),
    "resnet10_half": (32, [1, 1, 1, 1]),
    "resnet10_quarter": (16, [1, 1, 1, 1]),
}

#: torchvision's ResNets and the width of their pooled features (BasicBlock: 512,
#: Bottleneck: 2048), so that a run's feature width is known without building the network;
#: a test holds the table to torchvision.
RESNET_FEATURE_WIDTHS: dict[str, int] = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "resnext50_32x4d": 2048,
    "resnext101_32x8d": 2048,
    "resnext101_64x4d": 2048,
    "wide_resnet50_2": 2048,
    "wide_resnet101_2": 2048,
}

HOW_TO_LIST = (
    "use a torchvision classification model (see torchvision.models.list_models("
    "module=torchvision.models)), resnet18_half, resnet18_quarter, resnet10_half, "
    "resnet10_quarter, or timm:NAME (see timm.list_models(); needs pip install "
    "'contrastive[timm]')"
)


@functools.cache
def torchvision_backbones() -> tuple[str, ...]:
    """Every torchvision classification model name (detection, video... models excluded)."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


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
        timm = import_timm(name)
        if not timm.is_model(name[len(TIMM_PREFIX) :]):
            raise ContrastiveError(f"unknown timm model {name!r}; see timm.list_models()")
    elif not is_builtin_backbone(name):
        raise ContrastiveError(f"unknown backbone {name!r}; {_timm_suggestion(name)}{HOW_TO_LIST}")


def is_builtin_backbone(name: str) -> bool:
    """Whether ``name`` is a torchvision classification model or a narrow ResNet (imports
    torchvision only for names that are neither a narrow nor a torchvision ResNet)."""
    return name in NARROW_SHAPES or name in RESNET_FEATURE_WIDTHS or name in torchvision_backbones()


def _timm_suggestion(name: str) -> str:
    """``did you mean timm:NAME?`` where an installed timm has a model of that name."""
    try:
        import timm
    except ImportError:  # the extra is optional; HOW_TO_LIST says how to add it
        return ""
    return f"did you mean {TIMM_PREFIX}{name}? " if timm.is_model(name) else ""


def import_timm(name: str) -> types.ModuleType:
    try:
        import timm
    except ImportError:
        raise ContrastiveError(
            f"backbone {name} needs timm: pip install 'contrastive[timm]'"
        ) from None
    return timm


def is_torchvision_resnet(name: str) -> bool:
    """Whether ``name`` builds a torchvision ``ResNet`` (the small-image stem applies)."""
    if name in NARROW_SHAPES:
        return True
    if name.startswith(TIMM_PREFIX):
        return False
    if name in RESNET_FEATURE_WIDTHS:
        return True
    import torchvision

    builder = torchvision.models.get_model_builder(name)
    return builder.__module__ == torchvision.models.resnet.__name__


def known_feature_width(config: BackboneConfig) -> int | None:
    """The width of ``config``'s pooled features where it is known without building the
    network (the ResNets, whatever their stem), else None: then
    :func:`~contrastive.backbones.build_backbone` reports it."""
    if config.name in NARROW_SHAPES:
        return 8 * NARROW_SHAPES[config.name][0]
    return RESNET_FEATURE_WIDTHS.get(config.name)
