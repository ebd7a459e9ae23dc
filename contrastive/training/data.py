"""Training data loaders: the per-image pipeline (views made in DataLoader workers)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from contrastive.data.folder import ImageDataset
from contrastive.training.config import TrainConfig
from contrastive.views.per_image import MultiView


def per_image_loader(paths: list, config: TrainConfig) -> DataLoader:
    """Decodes and augments each image in workers; batches hold ``([view0, view1], ...)``."""
    dataset = ImageDataset(paths, transform=MultiView(config.views, num_views=2))
    generator = torch.Generator().manual_seed(config.seed)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        generator=generator,
    )
