"""Embedding files: features of every image of a folder, with paths and labels, as ``.npz``.

A file holds ``embeddings`` (float32, ``N x D``), ``paths`` (relative to the data folder),
``labels`` (int64, -1 where the image lies directly in the folder) and ``classes`` (the
sorted class-folder names the labels index into), plus three strings describing where it
came from: ``data_root``, ``source`` (the checkpoint) and ``feature`` (what was extracted).
``numpy.load(path)`` reads it; no pickled objects are involved.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from contrastive.data.folder import ImageDataset, ImageFolder
from contrastive.encoder import Encoder, evaluation_mode, feature_extractor, load_encoder
from contrastive.errors import ContrastiveError
from contrastive.files import atomic_path
from contrastive.views.config import ViewConfig
from contrastive.views.per_image import eval_transform

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("embeddings", "paths", "labels", "classes")

#: Side of the raw-pixel baseline's images: larger inputs are area-downsampled to it.
RAW_PIXEL_SIDE = 32


@dataclass
class Embeddings:
    """The contents of an embeddings file.

    Attributes:
        embeddings: ``(N, D)`` float32 features.
        paths: ``(N,)`` paths relative to ``data_root``.
        labels: ``(N,)`` int64 indices into ``classes``; -1 for unlabeled images.
        classes: ``(C,)`` class names.
        data_root: The embedded folder.
        source: The checkpoint (or baseline) the features come from.
        feature: What was extracted: ``backbone``, ``projector``, ``random_init`` or
            ``raw_pixels``.
    """

    embeddings: np.ndarray
    paths: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    data_root: str = ""
    source: str = ""
    feature: str = "backbone"

    def __len__(self) -> int:
        return len(self.paths)


class RawPixels(nn.Module):
    """The network input itself, as a baseline: ``(B, 3, H, W)`` -> ``(B, 3 * s * s)``.

    Pixels are those of the evaluation transform (resized, center-cropped and normalised
    with the run's mean and std), area-downsampled to ``side x side`` when larger so the
    baseline stays cheap (3072-d for 32 px).
    """

    def __init__(self, side: int = RAW_PIXEL_SIDE) -> None:
        super().__init__()
        self.side = side

    def forward(self, images: Tensor) -> Tensor:
        """Args: images: ``(B, 3, H, W)``. Returns ``(B, 3 * min(H, s) * min(W, s))``."""
        if images.shape[-1] > self.side or images.shape[-2] > self.side:
            images = F.adaptive_avg_pool2d(images, self.side)
        return images.flatten(start_dim=1)


def save_embeddings(embeddings: Embeddings, path: str | os.PathLike) -> None:
    """Writes an embeddings file atomically (uncompressed ``.npz``)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        # A file handle keeps numpy from appending ".npz" to the temporary name.
        np.savez(
            handle,
            embeddings=np.ascontiguousarray(embeddings.embeddings, dtype=np.float32),
            paths=np.asarray(embeddings.paths, dtype=str),
            labels=np.asarray(embeddings.labels, dtype=np.int64),
            classes=np.asarray(embeddings.classes, dtype=str),
            data_root=np.asarray(embeddings.data_root, dtype=str),
            source=np.asarray(embeddings.source, dtype=str),
            feature=np.asarray(embeddings.feature, dtype=str),
        )


def load_embeddings(path: str | os.PathLike) -> Embeddings:
    """Reads and checks an embeddings file.

    Raises:
        ContrastiveError: If the file is missing, not an ``.npz``, lacks a key, or its
            arrays disagree in length.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ContrastiveError(f"embeddings file not found: {file}")
    try:
        with np.load(file, allow_pickle=False) as content:
            arrays = {key: content[key] for key in content.files}
    except (OSError, ValueError) as error:
        raise ContrastiveError(f"cannot read {file} as an embeddings .npz: {error}") from error
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise ContrastiveError(f"{file} is not an embeddings file: missing {', '.join(missing)}")
    features = arrays["embeddings"]
    if features.ndim != 2 or not (len(features) == len(arrays["paths"]) == len(arrays["labels"])):
        raise ContrastiveError(
            f"{file}: embeddings {features.shape}, {len(arrays['paths'])} paths and "
            f"{len(arrays['labels'])} labels do not match"
        )
    return Embeddings(
        embeddings=features.astype(np.float32, copy=False),
        paths=arrays["paths"].astype(str),
        labels=arrays["labels"].astype(np.int64),
        classes=arrays["classes"].astype(str),
        data_root=str(arrays.get("data_root", "")),
        source=str(arrays.get("source", "")),
        feature=str(arrays.get("feature", "backbone")),
    )


def image_loader(
    folder: ImageFolder, view_config: ViewConfig, batch_size: int = 256, num_workers: int = 0
) -> torch.utils.data.DataLoader:
    """Batches ``(images (B, 3, s, s), labels (B,), indices (B,))`` in folder order."""
    labels, _classes = folder.labels()
    dataset = ImageDataset(folder.paths, eval_transform(view_config), labels)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=False,
    )


def extract_features(
    loader: torch.utils.data.DataLoader,
    extractors: Mapping[str, nn.Module],
    device: str | torch.device = "cpu",
    progress: bool = True,
    description: str = "embedding",
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Runs every extractor over every batch: one pass over the images for all of them.

    Extractors are moved to ``device`` (in place) and run in eval mode without gradients,
    so batch-norm statistics are used, never updated; their train/eval modes are restored.

    Args:
        loader: Yields ``(images (B, 3, H, W), labels (B,), dataset indices (B,))``.
        extractors: ``{name: module mapping images to (B, D_name) features}``.
        device: Where to compute.
        progress: Show a progress bar.
        description: The progress bar's label.

    Returns:
        ``({name: (N, D_name) float32 array}, (N,) dataset indices)`` in loader order. An
        unreadable image is replaced by the next readable one, whose index then repeats.
    """
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in extractors}
    indices: list[np.ndarray] = []
    for module in extractors.values():
        module.to(device)
    with evaluation_mode(*extractors.values()), torch.inference_mode():
        for images, _labels, batch_indices in tqdm(
            loader, desc=description, unit="batch", disable=not progress, leave=False
        ):
            images = images.to(device, non_blocking=True)
            for name, module in extractors.items():
                outputs[name].append(module(images).float().cpu().numpy())
            indices.append(np.asarray(batch_indices, dtype=np.int64))
    features = {
        name: np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        for name, parts in outputs.items()
    }
    return features, np.concatenate(indices) if indices else np.zeros(0, np.int64)


def embed_folder(
    data_dir: str | os.PathLike,
    view_config: ViewConfig,
    extractors: Mapping[str, nn.Module],
    sources: Mapping[str, str] | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Embeddings]:
    """Embeds every image of a folder with each extractor, in one pass over the images.

    Args:
        data_dir: Folder of images (class sub-folders give labels).
        view_config: Its input size and normalisation define the evaluation transform.
        extractors: ``{feature name: module}``; see :func:`extract_features`.
        sources: ``{feature name: checkpoint description}`` stored in each result.
        batch_size: Images per batch.
        num_workers: DataLoader worker processes.
        device: Where to compute.
        progress: Show a progress bar.

    Returns:
        ``{feature name: Embeddings}``.
    """
    folder = ImageFolder.scan(data_dir)
    labels, classes = folder.labels()
    loader = image_loader(folder, view_config, batch_size, num_workers)
    features, indices = extract_features(
        loader, extractors, device, progress, description=f"embedding {folder.root.name}"
    )
    # Unreadable images were replaced by their successors: keep each image once.
    kept, first_rows = np.unique(indices, return_index=True)
    if len(kept) < len(folder):
        log.warning(
            "%d unreadable image(s) in %s left out of the embeddings",
            len(folder) - len(kept),
            folder.root,
        )
    paths = np.asarray(folder.relative_paths(), dtype=str)[kept]
    sources = sources or {}
    return {
        name: Embeddings(
            values[first_rows],
            paths,
            labels[kept],
            np.asarray(classes, dtype=str),
            str(folder.root),
            sources.get(name, ""),
            name,
        )
        for name, values in features.items()
    }


def embed_images(
    source: str | os.PathLike | Encoder,
    data_dir: str | os.PathLike,
    projection_head: bool = False,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Embeddings:
    """Embeds every image of a folder with a trained encoder, as ``contrastive embed`` does.

    Args:
        source: Run folder, checkpoint (see :func:`~contrastive.encoder.load_encoder`) or
            an already loaded :class:`~contrastive.encoder.Encoder`.
        data_dir: Folder of images (class sub-folders give labels).
        projection_head: Embed with the projection head's output instead of the backbone
            features (needs a Lightning checkpoint), as ``embed --projection-head``.
        batch_size: Images per batch.
        num_workers: DataLoader worker processes.
        device: Where to compute.
        progress: Show a progress bar.

    Returns:
        The embeddings, ready for :func:`save_embeddings` or
        :func:`contrastive.explore.load_embeddings`.
    """
    encoder = (
        source
        if isinstance(source, Encoder)
        else load_encoder(source, with_projection_head=projection_head)
    )
    feature = "projector" if projection_head else "backbone"
    return embed_folder(
        data_dir,
        encoder.view_config,
        {feature: feature_extractor(encoder, projection_head)},
        {feature: encoder.source},
        batch_size,
        num_workers,
        device,
        progress,
    )[feature]
