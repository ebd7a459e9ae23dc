"""Augmentation views: configuration, per-image pipeline and batched on-device pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive.lazy_names import lazy_names

# Loaded on first use: the pipelines import torch and torchvision, the configuration does not.
_HOMES = {
    "BatchedViews": "contrastive.views.batched",
    "VIEW_PRESETS": "contrastive.views.config",
    "MultiView": "contrastive.views.per_image",
    "RandomGaussianNoise": "contrastive.views.per_image",
    "ViewConfig": "contrastive.views.config",
    "eval_transform": "contrastive.views.per_image",
    "view_preset": "contrastive.views.config",
    "view_transform": "contrastive.views.per_image",
}

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

if TYPE_CHECKING:
    from contrastive.views.batched import BatchedViews
    from contrastive.views.config import VIEW_PRESETS, ViewConfig, view_preset
    from contrastive.views.per_image import (
        MultiView,
        RandomGaussianNoise,
        eval_transform,
        view_transform,
    )

__getattr__, __dir__ = lazy_names(__name__, _HOMES)
