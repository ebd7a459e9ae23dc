"""A bar chart of encoders against their baselines (from
:func:`contrastive.evaluation.compare.compare_encoders`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from contrastive.errors import ContrastiveError
from contrastive.evaluation.compare import SCORES, Comparison

#: Legend text of each score.
SCORE_LABELS = {
    "knn_top1": "kNN top-1",
    "knn_top5": "kNN top-5",
    "linear_top1": "linear probe top-1",
    "linear_top5": "linear probe top-5",
}


def plot_comparison(
    comparison: Comparison,
    metrics: Sequence[str] = ("knn_top1", "linear_top1"),
    title: str | None = None,
) -> Figure:
    """Grouped bars: one group per feature set, one bar per metric, values in percent.

    Baseline groups are drawn hatched and lighter, so the encoders stand out.

    Args:
        comparison: The scores to draw.
        metrics: Which scores, from ``knn_top1``, ``knn_top5``, ``linear_top1`` and
            ``linear_top5``.
        title: Figure title (default: the k and the test folder).

    Returns:
        The figure.

    Raises:
        ContrastiveError: For an unknown metric or an empty comparison.
    """
    _check_metrics(metrics)
    names = list(comparison.scores)
    if not names:
        raise ContrastiveError("the comparison holds no scores to plot")
    width = 0.8 / len(metrics)
    positions = np.arange(len(names))
    figure = Figure(figsize=(max(5.0, 1.3 * len(names) + 2.5), 4.2), layout="constrained")
    ax = figure.subplots()
    colours = colormaps["tab10"].colors
    for slot, metric in enumerate(metrics):
        values = np.array([100 * comparison.scores[name][metric] for name in names])
        offsets = positions - 0.4 + width * (slot + 0.5)
        bars = ax.bar(offsets, values, width, label=SCORE_LABELS[metric], color=colours[slot])
        for bar, name in zip(bars, names):
            if name in comparison.baselines:
                bar.set_alpha(0.55)
                bar.set_hatch("//")
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax.set_xticks(positions, names, rotation=15 if len(names) > 4 else 0, ha="center")
    _dress_axes(ax, len(metrics))
    ax.set_title(
        title
        or f"kNN (k={comparison.k}) and linear probe on "
        f"{_short(comparison.test)}; hatched: baselines",
        fontsize=10,
    )
    return figure


def _check_metrics(metrics: Sequence[str]) -> None:
    unknown = [metric for metric in metrics if metric not in SCORES]
    if unknown or not metrics:
        raise ContrastiveError(
            f"unknown metric(s) {unknown or list(metrics)}; choose from {', '.join(SCORES)}"
        )


def _dress_axes(ax: Axes, metric_count: int) -> None:
    """Percent axis with a light grid, and the legend in one row below the plot."""
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 109)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncol=metric_count,
        frameon=False,
        fontsize=8,
    )


def _short(path: str) -> str:
    parts = path.replace("\\", "/").rstrip("/").split("/")
    return "/".join(parts[-2:])
