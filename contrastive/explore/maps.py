"""The embedding map: a 2-D projection drawn as points, with thumbnails on top."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.offsetbox import AnnotationBbox, OffsetImage

from contrastive.embeddings import Embeddings, checked_features
from contrastive.errors import ContrastiveError
from contrastive.explore.images import (
    UNLABELED_COLOUR,
    class_palette,
    label_colours,
    load_thumbnails,
)

# Legends with more entries than this would cover the map; colours still differ.
_MAX_LEGEND_ENTRIES = 20


def spread_subsample(coordinates: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Picks up to ``count`` points spread over the map, at most one per grid cell.

    The map is divided into a ``2*ceil(sqrt(count))`` square grid and points are visited
    in random order, so dense regions get one thumbnail per cell instead of a pile.

    Args:
        coordinates: ``(N, 2)`` map coordinates.
        count: Maximum number of points.
        seed: Random seed for the visiting order.

    Returns:
        Sorted indices of the chosen points (at most ``count``).

    Raises:
        ContrastiveError: If ``coordinates`` is not 2-D or holds NaN or inf.
    """
    if count <= 0:
        return np.empty(0, dtype=np.int64)
    coordinates = checked_features(coordinates, "coordinates")
    cells_per_side = 2 * math.ceil(math.sqrt(count))
    low = coordinates.min(axis=0)
    span = np.maximum(coordinates.max(axis=0) - low, np.finfo(np.float32).eps)
    cells = np.minimum(
        ((coordinates - low) / span * cells_per_side).astype(np.int64), cells_per_side - 1
    )
    cell_ids = cells[:, 0] * cells_per_side + cells[:, 1]
    order = np.random.default_rng(seed).permutation(len(coordinates))
    _, first = np.unique(cell_ids[order], return_index=True)
    chosen = order[np.sort(first)][:count]
    return np.sort(chosen)


def plot_projection(
    dataset: Embeddings,
    coordinates: np.ndarray,
    max_thumbnails: int = 150,
    thumbnail_size: int = 32,
    zoom: float | None = None,
    seed: int = 0,
    title: str | None = None,
    figsize: tuple[float, float] = (11.0, 9.0),
) -> Figure:
    """Scatter of a 2-D projection coloured by label, with thumbnails at some points.

    Args:
        dataset: The embedded images (labels colour the points and thumbnail frames).
        coordinates: ``(N, 2)`` projection, e.g. from
            :func:`~contrastive.explore.projection.project_2d`.
        max_thumbnails: At most this many thumbnails, spread over the map
            (:func:`spread_subsample`); 0 draws points only and needs no images.
        thumbnail_size: Side of the decoded thumbnails in pixels.
        zoom: Display scale of the thumbnails; by default they fill one subsampling cell.
        seed: Random seed for the thumbnail choice.
        title: Figure title.
        figsize: Figure size in inches.

    Returns:
        The figure.

    Raises:
        ContrastiveError: If ``coordinates`` does not match the set or holds NaN or inf,
            ``thumbnail_size`` is below 1, or images are needed but cannot be found.
    """
    points = np.asarray(coordinates, dtype=np.float32)
    if points.shape != (len(dataset), 2):
        raise ContrastiveError(
            f"coordinates must have shape ({len(dataset)}, 2) to match "
            f"the embeddings, got {points.shape}"
        )
    # NaN points would vanish from the scatter and spoil the thumbnail grid unnoticed.
    points = checked_features(points, "coordinates")
    if thumbnail_size < 1:
        raise ContrastiveError(f"thumbnail_size must be at least 1 pixel, got {thumbnail_size}")
    figure = Figure(figsize=figsize, layout="constrained")
    ax = figure.subplots()
    colours = label_colours(dataset.labels, len(dataset.classes))
    ax.scatter(points[:, 0], points[:, 1], c=colours, s=8, alpha=0.6, linewidths=0)
    chosen = spread_subsample(points, min(max_thumbnails, len(points)), seed)
    if len(chosen):
        scale = zoom if zoom is not None else _auto_zoom(figure, max_thumbnails, thumbnail_size)
        _add_thumbnails(ax, dataset, points, colours, chosen, thumbnail_size, scale)
    # Half a thumbnail of room on each side keeps thumbnails at the edge inside the axes.
    ax.margins(0.6 / (2 * math.ceil(math.sqrt(max(max_thumbnails, 1)))) + 0.02)
    _add_legend(ax, dataset)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{len(dataset)} images, {len(chosen)} thumbnails")
    return figure


def _add_thumbnails(
    ax: Axes,
    dataset: Embeddings,
    points: np.ndarray,
    colours: np.ndarray,
    chosen: np.ndarray,
    thumbnail_size: int,
    scale: float,
) -> None:
    """Draws the thumbnails of the ``chosen`` rows at their points, framed in their colour."""
    thumbnails = load_thumbnails(dataset, chosen, thumbnail_size)
    for index, thumbnail in zip(chosen, thumbnails):
        box = AnnotationBbox(
            OffsetImage(thumbnail, zoom=scale),
            points[index],
            pad=0.15,
            frameon=True,
            bboxprops={"edgecolor": colours[index], "linewidth": 1.5},
        )
        ax.add_artist(box)


def _auto_zoom(figure: Figure, max_thumbnails: int, thumbnail_size: int) -> float:
    cells_per_side = 2 * math.ceil(math.sqrt(max(max_thumbnails, 1)))
    # About 80% of the figure width is axes; a thumbnail fills about one grid cell.
    cell_pixels = 0.8 * figure.get_figwidth() * figure.dpi / cells_per_side
    return float(np.clip(cell_pixels / thumbnail_size, 0.25, 2.0))


def _add_legend(ax, dataset: Embeddings) -> None:
    present = sorted(set(dataset.labels.tolist()))
    if present == [-1] or len(present) > _MAX_LEGEND_ENTRIES:
        return
    palette = class_palette(len(dataset.classes))
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=7,
            color=palette[label] if label >= 0 else UNLABELED_COLOUR,
            label=dataset.classes[label] if label >= 0 else "unlabeled",
        )
        for label in present
    ]
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )
