"""Export embeddings for TensorBoard's Embedding Projector (``tensorboard --logdir DIR``).

:meth:`torch.utils.tensorboard.SummaryWriter.add_embedding` writes the files: in ``DIR``,
``projector_config.pbtxt`` (and an empty event file); in ``DIR/00000/embeddings/``,
``tensors.tsv`` (one embedding per line), ``metadata.tsv`` (a header and one
``index, path, class, label`` line per point) and ``sprite.png`` (the thumbnails in a square
grid, row-major in point order). TensorBoard is an optional dependency
(``pip install tensorboard``).

The projector reads sprites of at most 8192 x 8192 pixels, so at most
``(8192 // thumbnail_size) ** 2`` points can have a thumbnail (65,536 at 32 px). Larger
sets are subsampled to that many points, with a warning; pass a smaller ``thumbnail_size``
to keep more. The sprite is drawn here in uint8 and the configuration written with it:
``add_embedding``'s own sprite goes through float64 copies (5.9 GB of memory for 50,000
points at 32 px; this way ~0.2 GB at the limit).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from contrastive.embeddings import Embeddings
from contrastive.errors import ContrastiveError
from contrastive.explore.images import load_thumbnails

log = logging.getLogger(__name__)

#: The projector's largest sprite side, in pixels (its ``MAX_SPRITE_IMAGE_SIZE``).
SPRITE_MAX_SIDE = 8192
#: The tensor's name in the projector (``add_embedding``'s tag; step 0).
TAG = "embeddings"
METADATA_HEADER = ["index", "path", "class", "label"]


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
    embeddings: Embeddings,
    out_dir: str | os.PathLike,
    thumbnail_size: int | None = 32,
    seed: int = 0,
    thumbnails: np.ndarray | None = None,
) -> ProjectorExport:
    """Writes the Embedding Projector files for a set of embeddings.

    Args:
        embeddings: The points; their images become the sprite when ``data_root`` is known.
        out_dir: Folder to write (created if needed; an earlier export there is replaced).
        thumbnail_size: Side of each sprite thumbnail in pixels; None exports no sprite.
        seed: Random seed for the subsample taken when the sprite cannot hold every point.
        thumbnails: ``(N, thumbnail_size, thumbnail_size, 3)`` uint8 thumbnails of every
            point, already decoded (then no image file is read).

    Returns:
        The written paths and the exported rows.

    Raises:
        ContrastiveError: If TensorBoard is not installed, ``thumbnail_size`` is out of
            range, ``data_root`` is not a folder, an image cannot be read or
            ``thumbnails`` does not match the points and the size.
    """
    summary_writer = _summary_writer_class()
    with_images = thumbnail_size is not None and embeddings.data_root is not None
    if with_images and not 1 <= thumbnail_size <= SPRITE_MAX_SIDE:
        raise ContrastiveError(
            f"thumbnail_size must be between 1 and {SPRITE_MAX_SIDE} pixels, got {thumbnail_size}"
        )
    if with_images and not embeddings.data_root.is_dir():
        raise ContrastiveError(f"data_root is not a folder: {embeddings.data_root}")
    indices = _exported_rows(len(embeddings), thumbnail_size if with_images else None, seed)
    # Thumbnails first: reading images is what fails, and then nothing is written.
    sprite = _sprite(embeddings, indices, thumbnail_size, thumbnails) if with_images else None
    folder = Path(out_dir).expanduser()
    tensor_dir = folder / f"{0:05d}" / TAG  # where add_embedding writes step 0 of TAG
    _remove_earlier_export(tensor_dir)
    with summary_writer(str(folder)) as writer:
        writer.add_embedding(
            embeddings.embeddings[indices],
            metadata=[_metadata_row(embeddings, int(index)) for index in indices],
            tag=TAG,
            metadata_header=METADATA_HEADER,
        )
    if sprite is not None:
        sprite.save(tensor_dir / "sprite.png")
        _write_config(folder, tensor_dir, thumbnail_size)
    log.info("wrote the projector files for %d points to %s", len(indices), folder)
    return ProjectorExport(
        out_dir=folder,
        config_path=folder / "projector_config.pbtxt",
        tensors_path=tensor_dir / "tensors.tsv",
        metadata_path=tensor_dir / "metadata.tsv",
        sprite_path=tensor_dir / "sprite.png" if with_images else None,
        indices=indices,
    )


def _remove_earlier_export(tensor_dir: Path) -> None:
    """Deletes what an earlier export wrote there (a stale sprite would otherwise stay)."""
    for name in ("tensors.tsv", "metadata.tsv", "sprite.png"):
        (tensor_dir / name).unlink(missing_ok=True)
    # An empty folder spares add_embedding's "Embedding dir exists" message on stdout.
    with contextlib.suppress(OSError):
        tensor_dir.rmdir()


def _summary_writer_class() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ContrastiveError(
            "the projector export needs TensorBoard: pip install tensorboard"
        ) from error
    return SummaryWriter


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


def _sprite(
    embeddings: Embeddings, indices: np.ndarray, size: int, decoded: np.ndarray | None
) -> Image.Image:
    """The thumbnails of ``indices`` in a square grid, row-major in point order, unused
    cells black (the layout the projector reads, as ``add_embedding`` draws it)."""
    if decoded is None:
        thumbnails = load_thumbnails(embeddings, indices, size)
    elif decoded.shape != (len(embeddings), size, size, 3) or decoded.dtype != np.uint8:
        raise ContrastiveError(
            f"thumbnails must be uint8 of shape ({len(embeddings)}, {size}, {size}, 3) for "
            f"{len(embeddings)} points at {size} px, got {decoded.dtype} {decoded.shape}"
        )
    else:
        thumbnails = decoded[indices]
    side = math.ceil(math.sqrt(len(thumbnails)))
    grid = np.zeros((side * side, size, size, 3), dtype=np.uint8)
    grid[: len(thumbnails)] = thumbnails
    grid = grid.reshape(side, side, size, size, 3).transpose(0, 2, 1, 3, 4)
    return Image.fromarray(grid.reshape(side * size, side * size, 3))


def _write_config(folder: Path, tensor_dir: Path, size: int) -> None:
    """``projector_config.pbtxt`` naming the tensors, metadata and sprite of the export."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    config = ProjectorConfig()
    info = config.embeddings.add()
    info.tensor_name = f"{TAG}:{0:05d}"
    relative = tensor_dir.relative_to(folder).as_posix()
    info.tensor_path = f"{relative}/tensors.tsv"
    info.metadata_path = f"{relative}/metadata.tsv"
    info.sprite.image_path = f"{relative}/sprite.png"
    info.sprite.single_image_dim.extend([size, size])
    (folder / "projector_config.pbtxt").write_text(text_format.MessageToString(config))


def _metadata_row(embeddings: Embeddings, index: int) -> list[str]:
    path, label = embeddings.paths[index], embeddings.labels[index]
    fields = (index, path, embeddings.label_name(index), label)
    # Tabs and newlines would shift columns or rows in the projector's parser; a name that
    # is not UTF-8 (surrogates in Python) cannot be written to its UTF-8 metadata file.
    return [
        str(field)
        .replace("\t", " ")
        .replace("\n", " ")
        .replace("\r", " ")
        .encode(errors="surrogateescape")
        .decode(errors="backslashreplace")
        for field in fields
    ]
