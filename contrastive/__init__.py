"""contrastive: self-supervised contrastive learning on image folders, built on Lightly.

Train an encoder, measure it, explore its embeddings::

    from contrastive import TrainConfig, train, view_preset
    result = train(TrainConfig(data="images/", out="runs/first", views=view_preset("cifar")))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive.lazy_names import lazy_names

__version__ = "0.1.0"

# The public names and the module each lives in. They load on first use, so that
# `import contrastive` stays cheap: torch, torchvision and Lightning take 5-7 s to import on
# 2 cores, and the command line starts the clock of --time-budget before they load.
_HOMES = {
    "BACKBONES": "contrastive.backbones",
    "BackboneConfig": "contrastive.backbone_config",
    "build_backbone": "contrastive.backbones",
    "ContrastiveError": "contrastive.errors",
    "DistanceContrastiveLoss": "contrastive.losses",
    "Encoder": "contrastive.encoder",
    "LossConfig": "contrastive.losses",
    "METHODS": "contrastive.methods",
    "MethodConfig": "contrastive.methods",
    "OptimConfig": "contrastive.training",
    "TrainConfig": "contrastive.training",
    "TrainResult": "contrastive.training",
    "train": "contrastive.planning.planned_training",
    "load_encoder": "contrastive.encoder",
    "VIEW_PRESETS": "contrastive.views",
    "ViewConfig": "contrastive.views",
    "view_preset": "contrastive.views",
}

__all__ = [
    "BACKBONES",
    "METHODS",
    "VIEW_PRESETS",
    "BackboneConfig",
    "ContrastiveError",
    "DistanceContrastiveLoss",
    "Encoder",
    "LossConfig",
    "MethodConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "ViewConfig",
    "build_backbone",
    "load_encoder",
    "train",
    "view_preset",
]

if TYPE_CHECKING:
    from contrastive.backbone_config import BackboneConfig
    from contrastive.backbones import BACKBONES, build_backbone
    from contrastive.encoder import Encoder, load_encoder
    from contrastive.errors import ContrastiveError
    from contrastive.losses import DistanceContrastiveLoss, LossConfig
    from contrastive.methods import METHODS, MethodConfig
    from contrastive.planning.planned_training import train
    from contrastive.training import OptimConfig, TrainConfig, TrainResult
    from contrastive.views import VIEW_PRESETS, ViewConfig, view_preset

__getattr__, __dir__ = lazy_names(__name__, _HOMES)
