"""Training data loaders for the two view pipelines.

``batched``: images decoded once into a uint8 cache (or per epoch in workers), batches of
uint8 images go to the training device and :class:`~contrastive.views.batched.BatchedViews`
makes the views there. ``per_image``: each image is decoded and augmented in DataLoader
workers by the torchvision pipeline; batches already hold the views.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from contrastive.data.cache import CachedImageLoader, ToSquareUint8, load_or_build_cache
from contrastive.data.folder import ImageDataset
from contrastive.training.config import TrainConfig
from contrastive.views.per_image import MultiView

#: Where images that fail to decode in DataLoader workers are listed while a run trains
#: (pipelines without the decoded cache); merged into ``skipped_files.txt`` at the end.
SKIP_LOG = ".skipped_while_training.tsv"


def _decoding_dataset(paths: list[Path], config: TrainConfig, transform) -> ImageDataset:
    """Decodes in workers; a worker that alone meets more bad files than the folder may
    have stops the run, and every skip reaches the run folder's :data:`SKIP_LOG`."""
    return ImageDataset(
        paths,
        transform=transform,
        max_bad_fraction=config.max_bad_fraction,
        skip_log=Path(config.run_dir) / SKIP_LOG,
    )


def per_image_loader(paths: list[Path], config: TrainConfig) -> DataLoader:
    """Decodes and augments each image in workers; batches hold ``([view0, view1], ...)``."""
    return _worker_loader(
        _decoding_dataset(paths, config, MultiView(config.views, num_views=2)), config
    )


def batched_loader(
    paths: list[Path], config: TrainConfig, rank: int = 0, world_size: int = 1
) -> tuple[Iterable, dict[Path, str]]:
    """uint8 image batches ``(images (B, 3, S, S), indices (B,))`` for on-device views.

    Returns:
        The loader and the files that failed to decode while building the cache.
    """
    size = config.resolved_stored_size
    if not config.cache_images:
        dataset = _decoding_dataset(paths, config, ToSquareUint8(size))
        return _worker_loader(dataset, config, drop_label=True), {}
    # A first run decodes on every core: nothing else runs before training starts.
    cache = load_or_build_cache(paths, size, directory=config.cache_dir)
    on_gpu = config.accelerator != "cpu" and torch.cuda.is_available()
    loader = CachedImageLoader(
        cache,
        config.batch_size,
        shuffle=True,
        drop_last=True,
        seed=config.seed,
        rank=rank,
        world_size=world_size,
        # Page-locked memory and reading ahead pay only where the step runs on a GPU.
        pin_memory=on_gpu,
        prefetch=on_gpu,
    )
    return loader, dict(cache.skip_reasons)


class _DropLabel(torch.utils.data.Dataset):
    """``(image, label, index) -> (image, index)``, the batched pipeline's batch layout."""

    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, _label, file_index = self.dataset[index]
        return image, file_index


def _worker_loader(
    dataset: ImageDataset, config: TrainConfig, drop_label: bool = False
) -> DataLoader:
    generator = torch.Generator().manual_seed(config.seed)
    return DataLoader(
        _DropLabel(dataset) if drop_label else dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        generator=generator,
    )
