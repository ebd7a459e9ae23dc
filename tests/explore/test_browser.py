"""The neighbour browser: live widgets when ipywidgets is there, a static grid otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from contrastive.errors import ContrastiveError
from contrastive.explore import Embeddings, neighbour_browser, save_figure


def test_without_ipywidgets_a_static_grid_is_returned(
    monkeypatch: pytest.MonkeyPatch, cifar_set: Embeddings, artifacts: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    with pytest.warns(UserWarning, match="ipywidgets is not installed"):
        figure = neighbour_browser(cifar_set, k=4, start=10, fallback_queries=3)
    assert isinstance(figure, Figure)
    save_figure(figure, artifacts / "browser_fallback.png")
    image_axes = [ax for ax in figure.axes if ax.images]
    assert len(image_axes) == 3 * 5
    assert [image_axes[5 * row].get_title().split("\n")[0] for row in range(3)] == [
        "query #10",
        "query #11",
        "query #12",
    ]


def test_widget_redraws_when_the_selection_changes(cifar_set: Embeddings, artifacts: Path) -> None:
    pytest.importorskip("ipywidgets")
    box = neighbour_browser(cifar_set, k=3, start=4)
    (class_filter, slider), caption, image = box.children[0].children, *box.children[1:]
    assert bytes(image.value).startswith(b"\x89PNG")
    assert "#4</b>" in caption.value and cifar_set.paths[4] in caption.value
    first = bytes(image.value)
    (artifacts / "browser_widget.png").write_bytes(first)
    slider.value = 60
    assert "#60</b>" in caption.value and bytes(image.value) != first

    chosen = 3  # any class but the first: the filter must move the slider's range
    class_filter.value = chosen
    members = np.flatnonzero(cifar_set.labels == chosen)
    assert slider.max == len(members) - 1 and slider.value == 0
    assert f"#{members[0]}</b>" in caption.value
    slider.value = 2
    assert f"#{members[2]}</b>" in caption.value


def test_bad_start_or_k(cifar_set: Embeddings) -> None:
    with pytest.raises(ContrastiveError, match="start"):
        neighbour_browser(cifar_set, start=len(cifar_set))
    with pytest.raises(ContrastiveError, match="k must be"):
        neighbour_browser(cifar_set, k=len(cifar_set))
