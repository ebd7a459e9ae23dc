"""Methods: short compositions of backbone, Lightly heads and a loss, registered by name.

The names load on first use: the method classes import torch and Lightly, and the command
line and ``contrastive health`` read only :mod:`.config` (the names, the settings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive.lazy_names import lazy_names

_HOMES = {
    "DEFAULT_QUEUE_SIZE": "contrastive.methods.config",
    "METHODS": "contrastive.methods.registry",
    "MethodConfig": "contrastive.methods.config",
    "MoCo": "contrastive.methods.moco",
    "SimCLR": "contrastive.methods.simclr",
    "build_method": "contrastive.methods.registry",
    "default_queue_size": "contrastive.methods.config",
}

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "METHODS",
    "MethodConfig",
    "MoCo",
    "SimCLR",
    "build_method",
    "default_queue_size",
]

if TYPE_CHECKING:
    from contrastive.methods.config import DEFAULT_QUEUE_SIZE, MethodConfig, default_queue_size
    from contrastive.methods.moco import MoCo
    from contrastive.methods.registry import METHODS, build_method
    from contrastive.methods.simclr import SimCLR

__getattr__, __dir__ = lazy_names(__name__, _HOMES)
