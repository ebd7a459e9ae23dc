"""Augmentation preview: the random views a :class:`ViewConfig` makes of a few images."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from contrastive.errors import ContrastiveError
from contrastive.explore.images import (
    denormalise,
    grid_figure,
    read_image,
    show_image,
    square_thumbnail,
)
from contrastive.views.config import ViewConfig
from contrastive.views.per_image import view_transform

ImageSource = str | os.PathLike | Image.Image


def sample_views(
    image: Image.Image, config: ViewConfig, num_views: int, seed: int = 0
) -> np.ndarray:
    """Draws views of one image without disturbing the global random state.

    The per-image pipeline draws from torch's and (for Lightly's blur) numpy's global
    generators; both are seeded for repeatability and restored afterwards.

    Args:
        image: RGB image.
        config: View distributions.
        num_views: Views to draw.
        seed: Random seed.

    Returns:
        ``(num_views, S, S, 3)`` float32 views in ``[0, 1]``, ``S = config.input_size``.
    """
    transform = view_transform(config)
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            views = [
                denormalise(transform(image), config.mean, config.std) for _ in range(num_views)
            ]
    finally:
        np.random.set_state(numpy_state)
    return np.stack(views)


def plot_augmentations(
    images: Sequence[ImageSource], config: ViewConfig, num_views: int = 6, seed: int = 0
) -> Figure:
    """One row per image: the original, then ``num_views`` random views.

    Args:
        images: Image files or RGB ``PIL`` images.
        config: View distributions, e.g. ``view_preset("cifar")``.
        num_views: Views per image.
        seed: Random seed; the same seed gives the same views.

    Returns:
        The figure, ``len(images)`` rows by ``num_views + 1`` columns.

    Raises:
        ContrastiveError: If no images are given, ``num_views < 1`` or a file is unreadable.
    """
    if len(images) == 0:
        raise ContrastiveError("no images given to preview augmentations on")
    if num_views < 1:
        raise ContrastiveError(f"num_views must be at least 1, got {num_views}")
    figure, axes = grid_figure(len(images), num_views + 1, title_lines=1)
    for row, source in enumerate(images):
        image = _as_image(source)
        show_image(axes[row, 0], square_thumbnail(image, config.input_size), "original", bold=True)
        for col, view in enumerate(sample_views(image, config, num_views, seed + row)):
            show_image(axes[row, col + 1], view, f"view {col + 1}")
    figure.suptitle(
        f"views at {config.input_size} px: crop scale {config.crop_scale}, "
        f"jitter strength {config.color_jitter_strength}",
        fontsize=9,
    )
    return figure


def _as_image(source: ImageSource) -> Image.Image:
    return source.convert("RGB") if isinstance(source, Image.Image) else read_image(source)
