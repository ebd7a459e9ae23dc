"""Training: configuration, the LightningModule, and ``train()``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# ``train`` loads PyTorch Lightning: on first use only, so that the command line's parser and
# the commands that never train (embed, eval, curate, --help) read TrainConfig without it
# (`contrastive --help` 3.6-3.8 s instead of 3.9-4.1 s on 2 cores).
_HOMES = {
    "OptimConfig": "contrastive.training.config",
    "TrainConfig": "contrastive.training.config",
    "TrainResult": "contrastive.training.train",
    "train": "contrastive.training.train",
}

__all__ = ["OptimConfig", "TrainConfig", "TrainResult", "train"]

if TYPE_CHECKING:
    from contrastive.training.config import OptimConfig, TrainConfig
    from contrastive.training.train import TrainResult, train


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
