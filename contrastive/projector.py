"""Export embeddings for TensorBoard's Embedding Projector (``tensorboard --logdir DIR``).

Writes, into one folder:

* ``tensors.tsv``: one embedding per line, tab-separated;
* ``metadata.tsv``: a header and one ``index, path, class, label`` line per embedding;
* ``sprite.png``: thumbnails in a square grid, row-major in embedding order;
* ``projector_config.pbtxt``: the projector config tying them together.

The projector reads sprites of at most 8192 x 8192 pixels, so at most
``(8192 // thumbnail_size) ** 2`` points can have a thumbnail (65,536 at 32 px). Larger
sets are subsampled to that many points, with a warning; pass a smaller
``thumbnail_size`` to keep more.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from contrastive.errors import ContrastiveError
from contrastive.explore.embeddings import EmbeddingSet
from contrastive.explore.images import load_thumbnails
from contrastive.files import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

#: The projector's largest sprite side, in pixels (its ``MAX_SPRITE_IMAGE_SIZE``).
SPRITE_MAX_SIDE = 8192
TENSORS_FILE = "tensors.tsv"
METADATA_FILE = "metadata.tsv"
SPRITE_FILE = "sprite.png"
CONFIG_FILE = "projector_config.pbtxt"
# Unused sprite cells: white, like the projector's background.
_SPRITE_BACKGROUND = (255, 255, 255)


@dataclass
class ProjectorExport:
    """What :func:`export_projector` wrote.

    Attributes:
        out_dir: The folder to pass to ``tensorboard --logdir``.
        config_path: ``projector_config.pbtxt``.
        tensors_path: ``tensors.tsv``.
        metadata_path: ``metadata.tsv``.
        sprite_path: ``sprite.png``, or None when no images were exported.
        indices: ``(M,)`` rows of the input that were exported, in file order.
    """

    out_dir: Path
    config_path: Path
    tensors_path: Path
    metadata_path: Path
    sprite_path: Path | None
    indices: np.ndarray


def max_sprite_images(thumbnail_size: int) -> int:
    """How many thumbnails of ``thumbnail_size`` px fit in the projector's largest sprite."""
    return (SPRITE_MAX_SIDE // thumbnail_size) ** 2


def export_projector(
    embeddings: np.ndarray,
    paths: Sequence[str],
    labels: np.ndarray | None,
    classes: Sequence[str],
    data_root: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    thumbnail_size: int = 32,
    seed: int = 0,
) -> ProjectorExport:
    """Writes the Embedding Projector files for a set of embeddings.

    Args:
        embeddings: ``(N, D)`` embeddings.
        paths: ``N`` image paths, relative to ``data_root``.
        labels: ``(N,)`` int labels indexing ``classes``, -1 for unlabeled; or None.
        classes: Class names.
        data_root: Folder of the images; None exports points without thumbnails.
        out_dir: Folder to write (created if needed; existing files are replaced).
        thumbnail_size: Side of each sprite thumbnail in pixels.
        seed: Random seed for the subsample taken when the sprite cannot hold every point.

    Returns:
        The written paths and the exported rows.

    Raises:
        ContrastiveError: On inconsistent inputs, a bad ``thumbnail_size`` or an image
            that cannot be read.
    """
    dataset = EmbeddingSet(
        embeddings=embeddings,
        paths=list(paths),
        labels=labels,
        classes=list(classes),
        data_root=data_root,
    )
    with_images = data_root is not None
    if with_images and not Path(data_root).expanduser().is_dir():
        raise ContrastiveError(f"data_root is not a folder: {data_root}")
    if with_images and not 1 <= thumbnail_size <= SPRITE_MAX_SIDE:
        raise ContrastiveError(
            f"thumbnail_size must be between 1 and {SPRITE_MAX_SIDE} pixels, got {thumbnail_size}"
        )
    indices = _exported_rows(len(dataset), thumbnail_size if with_images else None, seed)
    folder = Path(out_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    # The sprite goes first: reading images is what fails, and then nothing is replaced.
    sprite_path = (
        _write_sprite(dataset, indices, thumbnail_size, folder / SPRITE_FILE)
        if with_images
        else None
    )
    tensors_path = _write_tensors(dataset.embeddings[indices], folder / TENSORS_FILE)
    metadata_path = _write_metadata(dataset, indices, folder / METADATA_FILE)
    config_path = folder / CONFIG_FILE
    write_text_atomic(
        config_path,
        projector_config_text(
            len(indices),
            dataset.embeddings.shape[1],
            thumbnail_size if sprite_path is not None else None,
        ),
    )
    log.info("wrote the projector files for %d points to %s", len(indices), folder)
    return ProjectorExport(
        out_dir=folder,
        config_path=config_path,
        tensors_path=tensors_path,
        metadata_path=metadata_path,
        sprite_path=sprite_path,
        indices=indices,
    )


def _exported_rows(count: int, thumbnail_size: int | None, seed: int) -> np.ndarray:
    if thumbnail_size is None or count <= max_sprite_images(thumbnail_size):
        return np.arange(count)
    capacity = max_sprite_images(thumbnail_size)
    warnings.warn(
        f"the projector's sprite is limited to {SPRITE_MAX_SIDE}x{SPRITE_MAX_SIDE} "
        f"px, which holds {capacity} thumbnails of {thumbnail_size} px: exporting a "
        f"random {capacity} of {count} points (use a smaller thumbnail_size to "
        "export more)",
        stacklevel=3,
    )
    chosen = np.random.default_rng(seed).choice(count, size=capacity, replace=False)
    return np.sort(chosen)


def _write_tensors(embeddings: np.ndarray, target: Path) -> Path:
    with atomic_path(target) as temporary:
        # Six significant digits are plenty for a picture and keep the file small.
        np.savetxt(temporary, embeddings, fmt="%.6g", delimiter="\t")
    return target


def _write_metadata(dataset: EmbeddingSet, indices: np.ndarray, target: Path) -> Path:
    lines = ["index\tpath\tclass\tlabel"]
    for index in indices:
        lines.append(
            f"{index}\t{_tsv_field(dataset.paths[index])}\t"
            f"{_tsv_field(dataset.label_name(int(index)))}\t"
            f"{dataset.labels[index]}"
        )
    write_text_atomic(target, "\n".join(lines) + "\n")
    return target


def _tsv_field(text: str) -> str:
    # Tabs and newlines would shift columns or rows in the projector's parser.
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def sprite_grid_side(count: int) -> int:
    """Thumbnails per sprite row (and column): the projector expects a square grid."""
    return max(1, math.ceil(math.sqrt(count)))


def _write_sprite(
    dataset: EmbeddingSet, indices: np.ndarray, thumbnail_size: int, target: Path
) -> Path:
    side = sprite_grid_side(len(indices))
    sprite = Image.new("RGB", (side * thumbnail_size,) * 2, _SPRITE_BACKGROUND)
    # Decode in batches so a 65k-point sprite never holds every thumbnail twice.
    batch = 1024
    for start in range(0, len(indices), batch):
        thumbnails = load_thumbnails(dataset, indices[start : start + batch], thumbnail_size)
        for offset, thumbnail in enumerate(thumbnails):
            row, col = divmod(start + offset, side)
            sprite.paste(Image.fromarray(thumbnail), (col * thumbnail_size, row * thumbnail_size))
    with atomic_path(target) as temporary:
        sprite.save(temporary, format="PNG")
    return target


def projector_config_text(num_points: int, dims: int, thumbnail_size: int | None) -> str:
    """The ``projector_config.pbtxt`` text (protobuf text format of ``ProjectorConfig``).

    Args:
        num_points: Rows in ``tensors.tsv``.
        dims: Columns in ``tensors.tsv``.
        thumbnail_size: Sprite cell side in pixels, or None for no sprite.
    """
    lines = [
        "embeddings {",
        '  tensor_name: "embeddings"',
        f'  tensor_path: "{TENSORS_FILE}"',
        f"  tensor_shape: {num_points}",
        f"  tensor_shape: {dims}",
        f'  metadata_path: "{METADATA_FILE}"',
    ]
    if thumbnail_size is not None:
        lines += [
            "  sprite {",
            f'    image_path: "{SPRITE_FILE}"',
            f"    single_image_dim: {thumbnail_size}",
            f"    single_image_dim: {thumbnail_size}",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"
