"""contrastive: self-supervised contrastive learning on image folders, built on Lightly.

Train an encoder, measure it, explore its embeddings::

    from contrastive import TrainConfig, train, view_preset
    result = train(TrainConfig(data="images/", out="runs/first", views=view_preset("cifar")))
"""

from contrastive.backbones import BACKBONES, BackboneConfig, build_backbone
from contrastive.errors import ContrastiveError
from contrastive.losses import DistanceContrastiveLoss, LossConfig
from contrastive.methods import METHODS, MethodConfig
from contrastive.training import OptimConfig, TrainConfig, TrainResult, train
from contrastive.views import VIEW_PRESETS, ViewConfig, view_preset

__version__ = "0.1.0"

__all__ = [
    "BACKBONES",
    "METHODS",
    "VIEW_PRESETS",
    "BackboneConfig",
    "ContrastiveError",
    "DistanceContrastiveLoss",
    "LossConfig",
    "MethodConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "ViewConfig",
    "build_backbone",
    "train",
    "view_preset",
]
