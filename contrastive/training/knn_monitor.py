"""Online kNN monitor: a cheap, approximate quality signal logged during training.

Every ``every_n_epochs`` epochs the backbone (in eval mode, without gradients) embeds two
labeled folders and the weighted-kNN top-1 of the second against the first is logged as
``monitor/knn_top1``. It is a monitor, not the final evaluation: run ``contrastive eval``
on the trained run for reportable numbers.

The evaluation transform is deterministic, so the decoded, transformed images are kept in
memory after the first pass when they fit in ``cache_bytes``; later passes only run the
backbone.

Under DDP only rank 0 measures (every rank holds the same weights after the step's
all-reduce): the others wait in a broadcast of its number, so every rank logs the same value
and the images are decoded and held by one process instead of all of them.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch

from contrastive.data.folder import ImageFolder
from contrastive.embeddings import extract_features, image_loader
from contrastive.encoder import EncoderFeatures
from contrastive.errors import ContrastiveError
from contrastive.evaluation.knn import knn_rankings
from contrastive.evaluation.labels import align_test_labels, check_labels
from contrastive.evaluation.metrics import topk_accuracy
from contrastive.views.config import ViewConfig

log = logging.getLogger(__name__)

METRIC_NAME = "monitor/knn_top1"


@dataclass
class _Split:
    folder: ImageFolder
    labels: np.ndarray
    images: torch.Tensor | None = None


class KNNMonitor(pl.Callback):
    """Logs weighted-kNN top-1 (``monitor/knn_top1``) of ``pl_module.backbone``.

    Args:
        train_dir: Labeled folder forming the kNN feature bank.
        test_dir: Labeled folder whose images are classified.
        view_config: The run's views (evaluation transform: input size, normalisation).
        every_n_epochs: Measure after every ``n``-th training epoch (and after the last).
        k: Neighbours (clamped to the bank size).
        temperature: kNN temperature.
        batch_size: Images per batch.
        num_workers: DataLoader worker processes for the first (decoding) pass.
        cache_bytes: Keep transformed images in memory up to this size (0 disables).

    Raises:
        ContrastiveError: At the start of training if a folder is unlabeled or the test
            folder has classes the train folder lacks.
    """

    def __init__(
        self,
        train_dir: str | os.PathLike,
        test_dir: str | os.PathLike,
        view_config: ViewConfig,
        every_n_epochs: int = 1,
        k: int = 200,
        temperature: float = 0.1,
        batch_size: int = 256,
        num_workers: int = 0,
        cache_bytes: int = 2**30,
    ) -> None:
        super().__init__()
        self.train_dir, self.test_dir = train_dir, test_dir
        self.view_config = view_config
        self.every_n_epochs = max(1, every_n_epochs)
        self.k, self.temperature = k, temperature
        self.batch_size, self.num_workers = batch_size, num_workers
        self.cache_bytes = cache_bytes
        self._splits: tuple[_Split, _Split] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Scans and checks both folders before the first epoch, so bad input fails early."""
        if self._splits is None:
            self._splits = self._scan()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Measures and logs kNN top-1 on the scheduled epochs."""
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.every_n_epochs and not last:
            return
        top1 = self._measure_on_rank_zero(trainer, pl_module)
        pl_module.log(METRIC_NAME, top1, prog_bar=True, logger=True, on_epoch=True)
        if not trainer.is_global_zero:
            return
        log.info(
            "online monitor (kNN k=%d on %s, not a final evaluation): epoch %d top-1 %.2f%%",
            self.k,
            self.test_dir,
            epoch,
            100 * top1,
        )

    def _measure_on_rank_zero(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        """Rank 0's top-1, on every rank; a failure there stops every rank, none waits on.

        Raises:
            ContrastiveError: On the other ranks, if rank 0's measurement failed (rank 0
                raises its own error).
        """
        if trainer.world_size == 1:
            return self.measure(pl_module.backbone, pl_module.device)
        outcome: tuple[float | None, str | None] = (None, None)
        failure: Exception | None = None
        if trainer.is_global_zero:
            try:
                outcome = (self.measure(pl_module.backbone, pl_module.device), None)
            except Exception as error:  # noqa: BLE001 - re-raised below, after the others hear
                failure, outcome = error, (None, f"{type(error).__name__}: {error}")
        top1, message = trainer.strategy.broadcast(outcome, src=0)
        if failure is not None:
            raise failure
        if message is not None:
            raise ContrastiveError(f"the online kNN monitor failed in process 0: {message}")
        return float(top1)

    def measure(self, backbone: torch.nn.Module, device: torch.device | str = "cpu") -> float:
        """kNN top-1 of ``backbone`` features; the backbone's modes and statistics are kept.

        Returns:
            Top-1 accuracy in [0, 1].
        """
        if self._splits is None:
            self._splits = self._scan()
        extractor = EncoderFeatures(backbone)
        (train_features, train_labels), (test_features, test_labels) = (
            self._features(split, extractor, device) for split in self._splits
        )
        if not (train_features.isfinite().all() and test_features.isfinite().all()):
            # A diverged network: the monitor reports it, the run's own checks decide whether
            # training stops (kNN refuses NaN features).
            log.warning("online monitor: the backbone gives NaN or inf features; top-1 is nan")
            return math.nan
        k = min(self.k, len(train_labels))
        rankings = knn_rankings(
            train_features,
            train_labels,
            test_features,
            (k,),
            self.temperature,
            num_classes=int(train_labels.max()) + 1,
        )
        return topk_accuracy(rankings[k], test_labels, (1,))[1]

    def _scan(self) -> tuple[_Split, _Split]:
        train_folder = ImageFolder.scan(self.train_dir)
        test_folder = ImageFolder.scan(self.test_dir)
        train_labels, classes = train_folder.labels()
        test_labels, test_classes = test_folder.labels()
        check_labels(train_labels, classes, "--val-train")
        check_labels(test_labels, test_classes, "--val-test")
        test_labels = align_test_labels(
            classes, test_labels, test_classes, "--val-train", "--val-test"
        )
        return _Split(train_folder, train_labels), _Split(test_folder, test_labels)

    def _features(
        self, split: _Split, extractor: torch.nn.Module, device: torch.device | str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(N, D)`` and labels ``(N,)`` of one folder."""
        if split.images is None and self._fits_cache(split):
            split.images, split.labels = _decode_all(
                split.folder, split.labels, self.view_config, self.batch_size, self.num_workers
            )
        if split.images is not None:
            indices = torch.arange(len(split.images))
            dataset = torch.utils.data.TensorDataset(split.images, indices, indices)
            loader = torch.utils.data.DataLoader(dataset, batch_size=self.batch_size)
        else:
            loader = image_loader(split.folder, self.view_config, self.batch_size, self.num_workers)
        features, indices = extract_features(
            loader, {"backbone": extractor}, device, progress=False
        )
        # Rows of unreadable images hold their successor: take labels by returned index.
        return torch.from_numpy(features["backbone"]), torch.from_numpy(split.labels[indices])

    def _fits_cache(self, split: _Split) -> bool:
        side = self.view_config.evaluation_size
        return len(split.folder) * 3 * side * side * 4 <= self.cache_bytes


def _decode_all(
    folder: ImageFolder,
    labels: np.ndarray,
    view_config: ViewConfig,
    batch_size: int,
    num_workers: int,
) -> tuple[torch.Tensor, np.ndarray]:
    """All images of a folder through the evaluation transform, with their labels.

    Returns:
        ``(images (N, 3, s, s), labels (N,))``; an unreadable image's row holds its
        successor, and the label follows the image actually decoded.
    """
    images, indices = [], []
    for batch_images, _labels, batch_indices in image_loader(
        folder, view_config, batch_size, num_workers
    ):
        images.append(batch_images)
        indices.append(batch_indices.numpy())
    return torch.cat(images), labels[np.concatenate(indices)]
