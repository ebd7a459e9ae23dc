"""Training: configuration, the LightningModule, and ``train()``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive.lazy_names import lazy_names

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

__getattr__, __dir__ = lazy_names(__name__, _HOMES)
