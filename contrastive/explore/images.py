"""Thumbnails, label colours and image grids shared by the exploration plots.

Figures are built with :class:`matplotlib.figure.Figure` directly rather than pyplot, so
a notebook shows each returned figure once and loops do not pile up open figures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba_array
from matplotlib.figure import Figure
from PIL import Image, ImageOps

from contrastive.data.folder import load_rgb
from contrastive.embeddings import Embeddings
from contrastive.errors import ContrastiveError

#: Colour of unlabeled points.
UNLABELED_COLOUR = (0.6, 0.6, 0.6, 1.0)
#: Title colours for neighbours that share / do not share the query's class.
SAME_CLASS_COLOUR = "tab:green"
OTHER_CLASS_COLOUR = "tab:red"


def read_image(path: str | os.PathLike, min_side: int | None = None) -> Image.Image:
    """Decodes an image file to RGB (a large JPEG at reduced scale when ``min_side`` allows:
    see :func:`~contrastive.data.folder.load_rgb`).

    Raises:
        ContrastiveError: If the file is missing or cannot be decoded.
    """
    try:
        return load_rgb(path, min_side=min_side)
    # PIL's plugins raise a wide, undocumented range of exceptions on malformed data.
    except Exception as error:  # noqa: BLE001
        raise ContrastiveError(f"cannot read image {path}: {error}") from error


def square_thumbnail(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crops and resizes an RGB image to a ``(size, size, 3)`` uint8 array."""
    fitted = ImageOps.fit(image.convert("RGB"), (size, size), method=Image.Resampling.BICUBIC)
    return np.asarray(fitted, dtype=np.uint8)


def load_thumbnail(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decodes an image and centre-crops it to a square thumbnail.

    Args:
        path: Image file.
        size: Side of the thumbnail in pixels.

    Returns:
        ``(size, size, 3)`` uint8 RGB array.

    Raises:
        ContrastiveError: If the file is missing or cannot be decoded.
    """
    return square_thumbnail(read_image(path, min_side=size), size)


def load_thumbnails(
    dataset: Embeddings, indices: Sequence[int] | np.ndarray, size: int
) -> np.ndarray:
    """Thumbnails of several images of a set.

    Returns:
        ``(len(indices), size, size, 3)`` uint8 array.
    """
    thumbnails = np.empty((len(indices), size, size, 3), dtype=np.uint8)
    for slot, index in enumerate(indices):
        thumbnails[slot] = load_thumbnail(dataset.image_path(int(index)), size)
    return thumbnails


def denormalise(view: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undoes per-channel normalisation of a view for display.

    Args:
        view: ``(3, H, W)`` normalised float tensor.
        mean: Per-channel mean used to normalise.
        std: Per-channel standard deviation used to normalise.

    Returns:
        ``(H, W, 3)`` float32 array in ``[0, 1]``.
    """
    channels = torch.as_tensor(std, dtype=view.dtype)[:, None, None]
    offsets = torch.as_tensor(mean, dtype=view.dtype)[:, None, None]
    pixels = (view.detach().cpu() * channels + offsets).clamp(0.0, 1.0)
    return pixels.permute(1, 2, 0).numpy().astype(np.float32)


def label_colours(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """One RGBA colour per label; unlabeled (-1) points are grey.

    Args:
        labels: ``(N,)`` int labels.
        num_classes: Number of classes the labels index into.

    Returns:
        ``(N, 4)`` float array.
    """
    palette = class_palette(num_classes)
    colours = np.tile(np.asarray(UNLABELED_COLOUR), (len(labels), 1))
    labelled = labels >= 0
    colours[labelled] = palette[labels[labelled]]
    return colours


def class_palette(num_classes: int) -> np.ndarray:
    """``(num_classes, 4)`` distinct RGBA colours: tab10 / tab20, else a sampled turbo map."""
    for name, size in (("tab10", 10), ("tab20", 20)):
        if num_classes <= size:
            return to_rgba_array(colormaps[name].colors[:num_classes])
    return colormaps["turbo"](np.linspace(0.05, 0.95, num_classes))


def grid_figure(
    rows: int, cols: int, cell_inches: float = 1.3, title_lines: int = 2
) -> tuple[Figure, np.ndarray]:
    """A figure with a ``rows x cols`` grid of image axes, all axes hidden.

    Returns:
        ``(figure, axes)`` with ``axes`` a ``(rows, cols)`` object array.
    """
    title_inches = 0.17 * title_lines
    figure = Figure(
        figsize=(cols * cell_inches, rows * (cell_inches + title_inches)), layout="constrained"
    )
    axes = np.asarray(figure.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    return figure, axes


def show_image(
    ax: Axes,
    image: np.ndarray,
    title: str | None = None,
    colour: str | None = None,
    fontsize: float = 7.0,
    bold: bool = False,
) -> None:
    """Draws one image in ``ax`` with an optional coloured title."""
    ax.imshow(image)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(
            title,
            fontsize=fontsize,
            color=colour or "black",
            fontweight="bold" if bold else "normal",
        )
