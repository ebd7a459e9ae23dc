"""MoCo v2: a momentum key encoder and a queue of negatives.

Reference: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
CVPR 2020; Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020
(arXiv:2003.04297). The key encoder is an exponential moving average (Lightly's
``update_momentum``) whose momentum follows a cosine schedule (Lightly's
``cosine_schedule``); the queue is the loss's Lightly ``MemoryBankModule``.
"""

from __future__ import annotations

import copy

import torch
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn

from contrastive.methods.config import MethodConfig


class MoCo(nn.Module):
    """Query encoder, momentum key encoder and a queue-backed contrastive loss.

    Args:
        backbone: Maps images ``(B, 3, H, W)`` to features ``(B, feature_dim)``.
        feature_dim: Width of the backbone features.
        config: Projection sizes, momentum schedule.
        criterion: A loss built with ``memory_bank_size=(queue_size, output_dim)``: it takes
            queries and keys ``(B, D)``, uses the queue as negatives and enqueues the keys.
    """

    default_temperature = 0.2
    uses_memory_bank = True

    def __init__(
        self, backbone: nn.Module, feature_dim: int, config: MethodConfig, criterion: nn.Module
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.projection_head = MoCoProjectionHead(
            feature_dim, config.projection_hidden_dim, config.projection_output_dim
        )
        self.momentum_backbone = copy.deepcopy(backbone)
        self.momentum_projection_head = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.momentum_backbone)
        deactivate_requires_grad(self.momentum_projection_head)
        self.criterion = criterion

    def momentum(self, progress: float) -> float:
        """Key-encoder momentum at ``progress`` in [0, 1] (cosine from start to end)."""
        return cosine_schedule(
            int(progress * 10_000), 10_000, self.config.momentum_start, self.config.momentum_end
        )

    def training_loss(self, views: list[Tensor], progress: float) -> Tensor:
        """Loss of one batch; also updates the key encoder and the queue.

        Args:
            views: Two tensors ``(B, 3, H, W)``: queries from the first, keys from the second.
            progress: Fraction of training done, in [0, 1], for the momentum schedule.
        """
        momentum = self.momentum(progress)
        update_momentum(self.backbone, self.momentum_backbone, momentum)
        update_momentum(self.projection_head, self.momentum_projection_head, momentum)
        queries = self.projection_head(self.backbone(views[0]))
        with torch.no_grad():
            keys = self.momentum_projection_head(self.momentum_backbone(views[1]))
        return self.criterion(queries, keys.detach())
