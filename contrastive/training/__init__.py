"""Training: configuration, the LightningModule, and ``train()``."""

from contrastive.training.config import OptimConfig, TrainConfig
from contrastive.training.train import TrainResult, train

__all__ = ["OptimConfig", "TrainConfig", "TrainResult", "train"]
