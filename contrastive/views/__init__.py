"""Augmentation views: configuration, per-image pipeline and batched on-device pipeline."""

from contrastive.views.batched import BatchedViews
from contrastive.views.config import VIEW_PRESETS, ViewConfig, view_preset
from contrastive.views.per_image import (
    MultiView,
    RandomGaussianNoise,
    eval_transform,
    view_transform,
)

__all__ = [
    "BatchedViews",
    "VIEW_PRESETS",
    "MultiView",
    "RandomGaussianNoise",
    "ViewConfig",
    "eval_transform",
    "view_preset",
    "view_transform",
]
