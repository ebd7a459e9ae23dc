"""At the end of training, an Embedding Projector of training images in the run's TensorBoard.

``tensorboard --logdir RUN/tensorboard`` then shows the scalars and, under *Projector*, a
seeded sample of the training images placed by their backbone features, with thumbnails
and class names: the export of ``contrastive embed --projector``
(:func:`contrastive.explore.projector.export_projector`), written for the final weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from contrastive.data.folder import ImageFolder
from contrastive.embeddings import Embeddings, extract_features, image_loader
from contrastive.encoder import EncoderFeatures
from contrastive.views.config import ViewConfig

log = logging.getLogger(__name__)

#: Side of each thumbnail in the projector's sprite, in pixels.
THUMBNAIL_SIZE = 32


class ProjectorAtEnd(pl.Callback):
    """Writes the projector files into the TensorBoard logger's folder when training ends.

    Only the global-zero process writes, and only when the run logs to TensorBoard.

    Args:
        data_root: The training folder (paths are shown relative to it; class sub-folders
            give the points' classes).
        paths: The readable training images.
        view_config: The run's views (evaluation transform).
        sample_size: Training images embedded (all of them if fewer).
        seed: Chooses the sample.
    """

    def __init__(
        self,
        data_root: str | os.PathLike,
        paths: Sequence[str | os.PathLike],
        view_config: ViewConfig,
        sample_size: int = 1000,
        seed: int = 0,
    ) -> None:
        self.data_root = Path(data_root).expanduser().absolute()
        self.paths = [Path(path) for path in paths]
        self.view_config = view_config
        self.sample_size, self.seed = sample_size, seed
        self.written: Path | None = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        folders = [lg.log_dir for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not trainer.is_global_zero or not folders or self.sample_size <= 0:
            return
        # Imported here: exploration sits above training in the package's layers.
        from contrastive.explore.projector import export_projector

        backbone = pl_module.method.backbone  # type: ignore[attr-defined]
        embeddings = self._embed(backbone, pl_module.device)
        self.written = export_projector(
            embeddings, folders[0], thumbnail_size=THUMBNAIL_SIZE, seed=self.seed
        ).out_dir
        log.info(
            "TensorBoard projector: %d training images, `tensorboard --logdir %s`",
            len(embeddings),
            folders[0],
        )

    def _embed(self, backbone: torch.nn.Module, device: torch.device) -> Embeddings:
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(self.paths), generator=generator)[: self.sample_size]
        folder = ImageFolder(self.data_root, [self.paths[i] for i in sorted(order.tolist())])
        loader = image_loader(folder, self.view_config, 256, 0, reduced_decode=True)
        features, indices = extract_features(
            loader, {"backbone": EncoderFeatures(backbone)}, device, progress=False
        )
        labels, classes = folder.labels()
        kept, first_rows = np.unique(indices, return_index=True)
        return Embeddings(
            features["backbone"][first_rows],
            np.asarray(folder.relative_paths(), dtype=str)[kept],
            labels[kept],
            classes,
            folder.root,
            "end of training",
        )
