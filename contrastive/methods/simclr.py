"""SimCLR: two views through one backbone and projection head, in-batch negatives.

Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020 (arXiv:2002.05709).
"""

from __future__ import annotations

import torch
from lightly.models.modules import SimCLRProjectionHead
from torch import Tensor, nn

from contrastive.methods.config import MethodConfig


class SimCLR(nn.Module):
    """Backbone + Lightly's ``SimCLRProjectionHead`` + a loss over in-batch negatives.

    Args:
        backbone: Maps images ``(B, 3, H, W)`` to features ``(B, feature_dim)``.
        feature_dim: Width of the backbone features.
        config: Projection head sizes.
        criterion: A loss taking two ``(B, D)`` projections (NT-Xent or distance loss).
    """

    default_temperature = 0.5
    uses_memory_bank = False

    def __init__(
        self, backbone: nn.Module, feature_dim: int, config: MethodConfig, criterion: nn.Module
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(
            feature_dim, config.projection_hidden_dim, config.projection_output_dim
        )
        self.criterion = criterion

    def training_loss(self, views: list[Tensor], progress: float) -> Tensor:
        """Loss of one batch.

        Args:
            views: Two tensors ``(B, 3, H, W)``, the two views of the same B images.
            progress: Fraction of training done, in [0, 1] (unused by SimCLR).
        """
        # One forward pass over both views: batch-norm statistics are shared between the
        # views, as in the reference implementation, and it is faster than two passes.
        both = self.projection_head(self.backbone(torch.cat(views[:2])))
        first, second = both.chunk(2)
        return self.criterion(first, second)
