"""At the end of training, an Embedding Projector of training images in the run's TensorBoard.

``tensorboard --logdir RUN/tensorboard`` then shows the scalars and, under *Projector*, a
seeded sample of the training images placed by their backbone features, with thumbnails
and class names: the export of ``contrastive embed --projector``
(:func:`contrastive.explore.projector.export_projector`), written for the final weights.

The sample is decoded before training, once per image for its features and its thumbnail:
the decoding then counts in a time budget's plan instead of running past its end (1,000
photos of 12 MP took 35 ms each to decode twice on 2 cores, more than the 5 s a budget
keeps for the end of a run), and the end of training only runs the network.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torchvision.transforms.v2 as T
from pytorch_lightning.loggers import TensorBoardLogger

from contrastive.data.folder import ImageFolder, load_rgb
from contrastive.embeddings import Embeddings, extract_features
from contrastive.encoder import EncoderFeatures
from contrastive.views.config import ViewConfig
from contrastive.views.per_image import eval_resize_crop, eval_transform, evaluation_resize

log = logging.getLogger(__name__)

#: Side of each thumbnail in the projector's sprite, in pixels.
THUMBNAIL_SIZE = 32


class ProjectorAtEnd(pl.Callback):
    """Writes the projector files into the TensorBoard logger's folder when training ends.

    Only the global-zero process decodes the sample and writes, and only when the run logs
    to TensorBoard.

    Args:
        data_root: The training folder (paths are shown relative to it; class sub-folders
            give the points' classes).
        paths: The readable training images.
        view_config: The run's views (evaluation transform).
        sample_size: Training images embedded (all of them if fewer); an image that cannot
            be decoded is left out.
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
        self.sample: DecodedSample | None = None
        self.written: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        writes = trainer.is_global_zero and self.sample_size > 0 and _tensorboard_folders(trainer)
        if stage == "fit" and self.sample is None and writes:
            self.sample = self._decode_sample()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        folders = _tensorboard_folders(trainer)
        if not trainer.is_global_zero or not folders or not self.sample:
            return
        # Imported here: exploration sits above training in the package's layers.
        from contrastive.explore.projector import export_projector

        backbone = pl_module.method.backbone  # type: ignore[attr-defined]
        try:
            embeddings = self._embed(backbone, pl_module.device)
            self.written = export_projector(
                embeddings,
                folders[0],
                thumbnail_size=THUMBNAIL_SIZE,
                seed=self.seed,
                thumbnails=self.sample.thumbnails,
            ).out_dir
        except Exception as error:  # noqa: BLE001 - an optional view must not cost the run
            # Training is over: the weights are exported after this hook whatever happens
            # here, and the projector can be written from them later.
            log.warning(
                "the TensorBoard projector was not written (%s: %s); the trained weights "
                "are saved as usual; write it later with `contrastive embed --run %s "
                "--data %s --out embeddings.npz --projector %s`",
                type(error).__name__,
                next(iter(str(error).splitlines()), ""),
                Path(folders[0]).parent,
                self.data_root,
                folders[0],
            )
            return
        log.info(
            "TensorBoard projector: %d training images, `tensorboard --logdir %s`",
            len(embeddings),
            shlex.quote(str(folders[0])),
        )

    def _decode_sample(self) -> DecodedSample:
        """The seeded sample through the evaluation resize and crop, with thumbnails."""
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(self.paths), generator=generator)[: self.sample_size]
        # Imported here: exploration sits above training in the package's layers.
        from contrastive.explore.images import square_thumbnail

        resize_and_crop = eval_resize_crop(self.view_config)
        min_side = max(evaluation_resize(self.view_config), THUMBNAIL_SIZE)
        images, thumbnails, kept = [], [], []
        for index in sorted(order.tolist()):
            try:
                image = load_rgb(self.paths[index], min_side=min_side)
            except Exception:  # noqa: BLE001 - PIL raises many kinds; the image is left out
                continue
            images.append(np.asarray(resize_and_crop(image), dtype=np.uint8).transpose(2, 0, 1))
            thumbnails.append(square_thumbnail(image, THUMBNAIL_SIZE))
            kept.append(self.paths[index])
        if not kept:
            return DecodedSample(torch.zeros(0), np.zeros(0), [])
        return DecodedSample(torch.from_numpy(np.stack(images)), np.stack(thumbnails), kept)

    def _embed(self, backbone: torch.nn.Module, device: torch.device) -> Embeddings:
        sample = self.sample
        assert sample is not None
        folder = ImageFolder(self.data_root, sample.paths)
        labels, classes = folder.labels()
        to_input = T.Compose(eval_transform(self.view_config).transforms[1:])

        def batches(size: int = 256) -> Iterator[tuple[torch.Tensor, np.ndarray, np.ndarray]]:
            for start in range(0, len(sample), size):
                rows = np.arange(start, min(start + size, len(sample)))
                yield to_input(sample.images[rows]), labels[rows], rows

        features, _ = extract_features(
            batches(),
            {"backbone": EncoderFeatures(backbone)},
            device,
            progress=False,
        )
        return Embeddings(
            features["backbone"],
            np.asarray(folder.relative_paths(), dtype=str),
            labels,
            classes,
            folder.root,
            "end of training",
        )


@dataclass
class DecodedSample:
    """The projector's images, decoded once before training.

    Attributes:
        images: ``(N, 3, s, s)`` uint8, resized and centre-cropped to the evaluation size.
        thumbnails: ``(N, t, t, 3)`` uint8 sprite thumbnails.
        paths: The N image files.
    """

    images: torch.Tensor
    thumbnails: np.ndarray
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)


def _tensorboard_folders(trainer: pl.Trainer) -> list[str]:
    return [lg.log_dir for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
