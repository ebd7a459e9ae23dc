"""Every epoch gets its own shuffle, also after something read the loader before training.

The time budget's probe times a few steps on batches of the training loader inside
``setup``, before any epoch hook runs. The probe must not shift the epochs: with the decoded
cache, epoch ``e`` of rank ``r`` reads the rows of ``CachedImageLoader.epoch_rows(e)`` for
that rank (:class:`LoaderPosition` sets the epoch); with the uncached DataLoader, Lightning's
``DistributedSampler.set_epoch`` (or the seeded ``RandomSampler``) gives each epoch another
order. Checked in one process and in two (DDP, ``ddp_fork`` on CPU, each rank writing what
it read to a file).
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from contrastive.data.cache import CachedImageLoader, DecodedCache, load_or_build_cache
from contrastive.training.config import TrainConfig
from contrastive.training.data import batched_loader
from contrastive.training.resumable import LoaderPosition, ResumableLoader
from contrastive.views.config import ViewConfig

IMAGES, BATCH, EPOCHS = 24, 3, 3


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("shuffle")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(IMAGES):
        path = root / f"{index:02d}.png"
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def cache(image_paths: list[Path], tmp_path_factory: pytest.TempPathFactory) -> DecodedCache:
    return load_or_build_cache(image_paths, 8, tmp_path_factory.mktemp("cache"), workers=0)


class ProbeRead(pl.Callback):
    """Reads two batches in ``setup``, as the budget's step-time probe does."""

    def __init__(self, batches: Any) -> None:
        self.batches = batches

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        iterator = iter(self.batches)
        next(iterator)
        next(iterator)


class Recording(pl.LightningModule):
    """Records the file indices of every batch, by epoch; writes them per rank at the end."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.out = out
        self.read: dict[int, list[int]] = {}

    def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
        _images, indices = batch
        self.read.setdefault(self.current_epoch, []).extend(indices.tolist())
        return self.layer(torch.ones(1, 1)).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_end(self) -> None:
        (self.out / f"rank{self.global_rank}.json").write_text(json.dumps(self.read))


def expected_rows(cache: DecodedCache, epoch: int, rank: int, world_size: int) -> list[int]:
    """What rank ``rank`` should read in ``epoch``: its rows, sorted within each batch."""
    loader = CachedImageLoader(cache, BATCH, seed=5, rank=rank, world_size=world_size)
    rows = loader.epoch_rows(epoch).numpy()
    batches = [np.sort(rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)]
    return cache.valid[np.concatenate(batches)].tolist()


def fit(
    loader: Any, out: Path, devices: int, callbacks: list[pl.Callback]
) -> list[dict[int, list[int]]]:
    """Trains ``EPOCHS`` epochs after a probe read; each rank's file indices by epoch."""
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_fork" if devices > 1 else "auto",
        max_epochs=EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ProbeRead(loader), *callbacks],
    )
    trainer.fit(Recording(out), train_dataloaders=loader)
    return [
        {int(epoch): rows for epoch, rows in json.loads(path.read_text()).items()}
        for path in sorted(out.glob("rank*.json"))
    ]


DEVICES = [
    1,
    pytest.param(
        2,
        marks=pytest.mark.skipif(
            "fork" not in multiprocessing.get_all_start_methods(), reason="forked ranks"
        ),
    ),
]


@pytest.mark.parametrize("devices", DEVICES)
def test_each_epoch_reads_its_own_permutation(
    one_thread: None, cache: DecodedCache, tmp_path: Path, devices: int
) -> None:
    loader = ResumableLoader(CachedImageLoader(cache, BATCH, drop_last=True, seed=5))

    ranks = fit(loader, tmp_path, devices, [LoaderPosition(loader)])

    assert len(ranks) == devices
    for rank, read in enumerate(ranks):
        assert sorted(read) == list(range(EPOCHS))
        for epoch in range(EPOCHS):
            assert read[epoch] == expected_rows(cache, epoch, rank, devices), (rank, epoch)
        assert read[0] != read[1] != read[2]
    if devices > 1:  # the ranks share each epoch out without overlap
        for epoch in range(EPOCHS):
            assert not set(ranks[0][epoch]) & set(ranks[1][epoch])


@pytest.mark.parametrize("devices", DEVICES)
def test_uncached_loader_shuffles_each_epoch_anew(
    one_thread: None, image_paths: list[Path], tmp_path: Path, devices: int
) -> None:
    config = TrainConfig(batch_size=BATCH, num_workers=0, cache_images=False, seed=5)
    loader, _ = batched_loader(image_paths, config.with_overrides(views=ViewConfig(input_size=8)))

    ranks = fit(loader, tmp_path, devices, [])

    for read in ranks:
        assert sorted(read) == list(range(EPOCHS))
        assert len({tuple(read[epoch]) for epoch in range(EPOCHS)}) == EPOCHS
        assert all(len(set(read[epoch])) == IMAGES // devices for epoch in range(EPOCHS))
    if devices > 1:
        for epoch in range(EPOCHS):
            assert not set(ranks[0][epoch]) & set(ranks[1][epoch])
