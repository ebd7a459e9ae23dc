"""An interactive neighbour browser for notebooks, with a static fallback.

With ipywidgets installed, a class filter and a slider pick the query image and its
nearest neighbours are redrawn as a PNG. Without ipywidgets, a static neighbour grid of a
few images is returned instead, so notebooks still run (e.g. headless under nbclient).
"""

from __future__ import annotations

import html
import io
import warnings
from types import ModuleType
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from contrastive.embeddings import Embeddings
from contrastive.errors import ContrastiveError
from contrastive.explore.grids import draw_neighbour_rows, plot_neighbours
from contrastive.explore.similarity import top_k_similar, unit_rows

ALL_CLASSES = -1


def neighbour_browser(
    dataset: Embeddings,
    k: int = 8,
    start: int = 0,
    image_size: int = 64,
    fallback_queries: int = 4,
) -> Any:
    """A widget to pick an image and see its ``k`` nearest neighbours.

    Args:
        dataset: The embedded images.
        k: Neighbours shown.
        start: Row shown first.
        image_size: Side of each thumbnail in pixels.
        fallback_queries: Rows (from ``start`` on) in the static grid used when
            ipywidgets is missing.

    Returns:
        An ``ipywidgets.VBox`` (class filter and slider, caption, neighbour image), or,
        without ipywidgets, a static :class:`~matplotlib.figure.Figure` with a warning.

    Raises:
        ContrastiveError: If ``start`` or ``k`` is out of range.
    """
    if not 0 <= start < len(dataset):
        raise ContrastiveError(f"start must be a row in 0..{len(dataset) - 1}, got {start}")
    if not 1 <= k < len(dataset):
        raise ContrastiveError(f"k must be between 1 and {len(dataset) - 1}, got {k}")
    try:
        import ipywidgets
    except ImportError:
        warnings.warn(
            "ipywidgets is not installed (pip install contrastive[notebooks]); "
            "showing a static neighbour grid instead",
            stacklevel=2,
        )
        queries = np.arange(start, min(start + max(fallback_queries, 1), len(dataset)))
        return plot_neighbours(dataset, queries, k, image_size)
    return _Browser(dataset, k, start, image_size, ipywidgets).widget


class _Browser:
    """Holds the widgets and redraws the neighbours when the selection changes."""

    def __init__(
        self, dataset: Embeddings, k: int, start: int, image_size: int, widgets: ModuleType
    ) -> None:
        self.dataset, self.k, self.image_size = dataset, k, image_size
        # Normalised once: each redraw is then one matrix-vector product.
        self.unit = unit_rows(dataset.embeddings)
        self.rows = np.arange(len(dataset))
        self.updating = False
        self.class_filter = widgets.Dropdown(
            options=self._class_options(),
            value=ALL_CLASSES,
            description="class",
            layout=widgets.Layout(display=None if dataset.is_labeled else "none"),
        )
        self.slider = widgets.IntSlider(
            value=start, min=0, max=len(dataset) - 1, description="image", continuous_update=False
        )
        self.caption = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.class_filter.observe(self._on_class, names="value")
        self.slider.observe(lambda _change: self.render(), names="value")
        self.widget = widgets.VBox(
            [widgets.HBox([self.class_filter, self.slider]), self.caption, self.image]
        )
        self.render()

    def _class_options(self) -> list[tuple[str, int]]:
        counts = np.bincount(
            self.dataset.labels[self.dataset.labels >= 0], minlength=len(self.dataset.classes)
        )
        return [("all classes", ALL_CLASSES)] + [
            (f"{name} ({count})", label)
            for label, (name, count) in enumerate(zip(self.dataset.classes, counts))
            if count
        ]

    def _on_class(self, change: dict) -> None:
        label = change["new"]
        self.rows = (
            np.arange(len(self.dataset))
            if label == ALL_CLASSES
            else np.flatnonzero(self.dataset.labels == label)
        )
        # Changing max and value fires the slider's observer; draw once at the end.
        self.updating = True
        try:
            self.slider.value = 0
            self.slider.max = len(self.rows) - 1
        finally:
            self.updating = False
        self.render()

    @property
    def query(self) -> int:
        """The dataset row currently shown."""
        return int(self.rows[self.slider.value])

    def render(self) -> None:
        """Redraws the caption and the neighbour image for the current query."""
        if self.updating:
            return
        query = self.query
        indices, similarities = top_k_similar(
            self.unit[[query]], self.unit, self.k, exclude=[query], normalise=False
        )
        figure = draw_neighbour_rows(
            self.dataset, np.array([query]), indices, similarities, self.image_size
        )
        self.image.value = _png_bytes(figure)
        self.caption.value = (
            f"<b>#{query}</b> {html.escape(self.dataset.paths[query])} "
            f"({html.escape(self.dataset.label_name(query))})"
        )


def _png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
