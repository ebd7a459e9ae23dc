"""Image grids: nearest neighbours of query images, duplicate pairs, image lists."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from contrastive.embeddings import Embeddings
from contrastive.errors import ContrastiveError
from contrastive.explore.images import (
    OTHER_CLASS_COLOUR,
    SAME_CLASS_COLOUR,
    grid_figure,
    load_thumbnail,
    show_image,
)
from contrastive.explore.similarity import check_indices, nearest_neighbours


def plot_neighbours(
    dataset: Embeddings,
    query_indices: Sequence[int] | np.ndarray,
    k: int = 8,
    image_size: int = 64,
) -> Figure:
    """One row per query: the query image, then its ``k`` most cosine-similar images.

    Neighbour titles give the similarity and class, green when the class matches the
    query's and red when it differs (black when either is unlabeled).

    Args:
        dataset: The embedded images.
        query_indices: ``(Q,)`` rows of ``dataset`` to query, or an ``(N,)`` boolean mask
            of them (e.g. ``dataset.labels == 2``).
        k: Neighbours per query.
        image_size: Side of each thumbnail in pixels.

    Returns:
        The figure, ``Q`` rows by ``k + 1`` columns.

    Raises:
        ContrastiveError: If a query is not a row of ``dataset``
            (:func:`~contrastive.explore.similarity.check_indices`) or ``k`` is out of range.
    """
    queries = check_indices(query_indices, len(dataset), "query_indices")
    indices, similarities = nearest_neighbours(dataset.embeddings, k, queries)
    return draw_neighbour_rows(dataset, queries, indices, similarities, image_size)


def draw_neighbour_rows(
    dataset: Embeddings,
    queries: np.ndarray,
    indices: np.ndarray,
    similarities: np.ndarray,
    image_size: int = 64,
) -> Figure:
    """Draws precomputed neighbours; see :func:`plot_neighbours`.

    Args:
        dataset: The embedded images.
        queries: ``(Q,)`` query rows.
        indices: ``(Q, k)`` neighbour rows, most similar first.
        similarities: ``(Q, k)`` their cosine similarities.
        image_size: Side of each thumbnail in pixels.
    """
    figure, axes = grid_figure(len(queries), indices.shape[1] + 1)
    for row, query in enumerate(queries):
        show_image(
            axes[row, 0],
            load_thumbnail(dataset.image_path(int(query)), image_size),
            f"query #{int(query)}\n{dataset.label_name(int(query))}",
            bold=True,
        )
        for col, (neighbour, similarity) in enumerate(zip(indices[row], similarities[row])):
            show_image(
                axes[row, col + 1],
                load_thumbnail(dataset.image_path(int(neighbour)), image_size),
                f"{similarity:.3f}\n{dataset.label_name(int(neighbour))}",
                _match_colour(dataset, int(query), int(neighbour)),
            )
    return figure


def plot_pairs(
    dataset: Embeddings,
    pairs: np.ndarray,
    similarities: np.ndarray,
    max_pairs: int = 8,
    image_size: int = 64,
) -> Figure:
    """Image pairs side by side, e.g. from
    :func:`~contrastive.explore.similarity.near_duplicates`.

    Args:
        dataset: The embedded images.
        pairs: ``(M, 2)`` row pairs.
        similarities: ``(M,)`` their similarities.
        max_pairs: Only the first ``max_pairs`` pairs are drawn, two pairs per row.
        image_size: Side of each thumbnail in pixels.

    Returns:
        The figure.

    Raises:
        ContrastiveError: If there are no pairs, ``pairs`` is not ``(M, 2)`` rows of
            ``dataset``, or ``similarities`` does not have one value per pair.
    """
    array = np.asarray(pairs)
    if array.size == 0:
        raise ContrastiveError("no pairs to show (lower the similarity threshold?)")
    if array.ndim != 2 or array.shape[1] != 2:
        raise ContrastiveError(f"pairs must have shape (M, 2), got {array.shape}")
    scores = np.asarray(similarities, dtype=np.float64).reshape(-1)
    if len(scores) != len(array):
        # zip() would silently drop the pairs without a similarity.
        raise ContrastiveError(
            f"similarities has {len(scores)} values for {len(array)} pairs; give one per pair"
        )
    if max_pairs < 1:
        raise ContrastiveError(f"max_pairs must be at least 1, got {max_pairs}")
    rows = check_indices(array.reshape(-1), len(dataset), "pairs", allow_mask=False)
    shown = rows.reshape(-1, 2)[:max_pairs]
    pairs_per_row = min(2, len(shown))
    figure, axes = grid_figure(-(-len(shown) // pairs_per_row), 2 * pairs_per_row)
    for slot, ((first, second), similarity) in enumerate(zip(shown, scores)):
        row, col = divmod(slot, pairs_per_row)
        for offset, index in enumerate((first, second)):
            show_image(
                axes[row, 2 * col + offset],
                load_thumbnail(dataset.image_path(int(index)), image_size),
                f"#{index} {dataset.label_name(int(index))}"
                + (f"\nsim {similarity:.4f}" if offset == 0 else "\n"),
            )
    return figure


def plot_images(
    dataset: Embeddings,
    indices: Sequence[int] | np.ndarray,
    captions: Sequence[str] | None = None,
    cols: int = 8,
    image_size: int = 64,
) -> Figure:
    """A plain grid of images, e.g. the outliers, with optional captions.

    Args:
        dataset: The embedded images.
        indices: Rows to show, in order, or an ``(N,)`` boolean mask of them.
        captions: One caption per image (default: row number and class).
        cols: Images per row.
        image_size: Side of each thumbnail in pixels.

    Raises:
        ContrastiveError: If there are no images, an index is not a row of ``dataset``
            (:func:`~contrastive.explore.similarity.check_indices`) or the captions do not
            match the images.
    """
    if np.size(indices) == 0:
        raise ContrastiveError("no images to show")
    chosen = check_indices(indices, len(dataset), "indices")
    if captions is not None and len(captions) != len(chosen):
        raise ContrastiveError(f"{len(captions)} captions for {len(chosen)} images")
    cols = max(1, min(cols, len(chosen)))
    figure, axes = grid_figure(-(-len(chosen) // cols), cols)
    for slot, index in enumerate(chosen):
        caption = (
            captions[slot]
            if captions is not None
            else f"#{index}\n{dataset.label_name(int(index))}"
        )
        show_image(
            axes.flat[slot], load_thumbnail(dataset.image_path(int(index)), image_size), caption
        )
    return figure


def _match_colour(dataset: Embeddings, query: int, neighbour: int) -> str:
    query_label, neighbour_label = dataset.labels[query], dataset.labels[neighbour]
    if query_label < 0 or neighbour_label < 0:
        return "black"
    return SAME_CLASS_COLOUR if query_label == neighbour_label else OTHER_CLASS_COLOUR
