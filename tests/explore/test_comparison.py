"""The bar chart of encoders against baselines; saved to ``test-artifacts/explore``."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.patches import Rectangle

from contrastive.errors import ContrastiveError
from contrastive.evaluation.compare import Comparison
from contrastive.explore import plot_comparison, save_figure


def comparison() -> Comparison:
    def row(knn: float, linear: float) -> dict[str, float]:
        return {
            "knn_top1": knn,
            "knn_top5": 1.0,
            "linear_top1": linear,
            "linear_top5": 1.0,
            "weight_decay": 1e-3,
        }

    return Comparison(
        scores={
            "SimCLR + NT-Xent": row(0.82, 0.86),
            "SimCLR + Euclidean": row(0.78, 0.84),
            "random init": row(0.41, 0.52),
            "raw pixels": row(0.35, 0.39),
        },
        baselines=["random init", "raw pixels"],
        k=20,
        train="data/train",
        test="data/test",
    )


def test_bars_show_every_score_and_mark_baselines(artifacts: Path) -> None:
    figure = plot_comparison(comparison())
    ax = figure.axes[0]
    bars = [patch for patch in ax.patches if isinstance(patch, Rectangle)]
    assert len(bars) == 8  # 4 feature sets x 2 metrics
    assert [round(bar.get_height(), 1) for bar in bars[:4]] == [82.0, 78.0, 41.0, 35.0]
    assert [bool(bar.get_hatch()) for bar in bars[:4]] == [False, False, True, True]
    assert [label.get_text() for label in ax.get_xticklabels()] == list(comparison().scores)
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "kNN top-1",
        "linear probe top-1",
    ]
    assert "82.0" in [text.get_text() for text in ax.texts]
    save_figure(figure, artifacts / "comparison.png")


def test_metric_choice_and_errors() -> None:
    figure = plot_comparison(comparison(), metrics=("linear_top5",), title="probe")
    assert len(figure.axes[0].patches) == 4 and figure.axes[0].get_title() == "probe"
    with pytest.raises(ContrastiveError, match="unknown metric"):
        plot_comparison(comparison(), metrics=("accuracy",))
    empty = Comparison(scores={}, baselines=[], k=20, train="a", test="b")
    with pytest.raises(ContrastiveError, match="no scores"):
        plot_comparison(empty)
