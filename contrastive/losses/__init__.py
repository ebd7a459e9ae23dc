"""Contrastive losses: Lightly's NT-Xent and DCL, and the design document's distance loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive.lazy_names import lazy_names

# Loaded on first use: the loss modules import torch and Lightly, the configuration does not.
_HOMES = {
    "DISTANCES": "contrastive.losses.config",
    "LOSSES": "contrastive.losses.config",
    "LossConfig": "contrastive.losses.config",
    "DistanceContrastiveLoss": "contrastive.losses.distance",
    "build_loss": "contrastive.losses.registry",
}

__all__ = ["DISTANCES", "LOSSES", "DistanceContrastiveLoss", "LossConfig", "build_loss"]

if TYPE_CHECKING:
    from contrastive.losses.config import DISTANCES, LOSSES, LossConfig
    from contrastive.losses.distance import DistanceContrastiveLoss
    from contrastive.losses.registry import build_loss

__getattr__, __dir__ = lazy_names(__name__, _HOMES)
