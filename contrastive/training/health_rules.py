"""The rules that read a run's label-free measures: what is logged, and what it means.

Shared by training (:class:`~contrastive.training.health.HealthMonitor` warns while a run
trains) and ``contrastive health RUN`` (:mod:`contrastive.evaluation.run_health` reads a
finished run's ``metrics.csv``). Plain Python and NumPy only: ``contrastive health`` and
``compare-runs`` read a CSV and draw a figure, and should not wait for torch to import.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contrastive.methods.config import MEMORY_BANK_METHODS, METHOD_NAMES

#: The column of the per-step spread of the projections, which
#: :class:`~contrastive.training.collapse.CollapseMonitor` logs.
COLLAPSE_STD_METRIC = "monitor/collapse_std"

#: A contrastive loss under this tells every view's partner apart almost surely (over 90%
#: probability): on a few dozen small images, by memorising them (40 images of 8-16 px with
#: mild views: loss 0.015, kNN 31 points under raw pixels; 50 CIFAR-10 photos: loss 0.29,
#: 7 points over). It names such runs, not every failure: the same 40 images under the
#: default plan ended at loss 0.3 and 39 points under raw pixels.
MEMORISED_LOSS = 0.1

#: Logged losses, the last ones, that must all be under :data:`MEMORISED_LOSS`: one low
#: batch is not a memorised run.
MEMORISED_LAST = 3


def memorised(losses: Sequence[float]) -> bool:
    """Whether the last :data:`MEMORISED_LAST` logged losses (in step order) all fell under
    :data:`MEMORISED_LOSS`: the one rule of ``train``'s warning and ``health``'s verdict."""
    tail = list(losses)[-MEMORISED_LAST:]
    return len(tail) == MEMORISED_LAST and all(
        math.isfinite(value) and value < MEMORISED_LOSS for value in tail
    )


@dataclass(frozen=True)
class Measure:
    """One label-free measure as logged.

    Attributes:
        metric: Column in ``metrics.csv``.
        higher_is_better: Direction in which the measure improves.
        description: What it is, for tables and plots.
    """

    metric: str
    higher_is_better: bool
    description: str


#: The measures by short name (the names ``--keep-best`` and ``compare-runs`` accept).
MEASURES: dict[str, Measure] = {
    "rank": Measure("monitor/rank", True, "RankMe of backbone features"),
    "rank_projection": Measure("monitor/rank_projection", True, "RankMe of projections"),
    "alignment": Measure("monitor/alignment", False, "alignment of two views (projections)"),
    "uniformity": Measure("monitor/uniformity", False, "uniformity (projections)"),
    "sample_std": Measure("monitor/sample_std", True, "std of L2-normalised projections"),
    "stability": Measure("monitor/stability", True, "kNN overlap with previous measurement"),
}

#: Collapse: rank below this, or normalised std below this fraction of the ``1/sqrt(d)``
#: that embeddings spread over the sphere have.
COLLAPSE_RANK = 2.0
COLLAPSE_STD_FRACTION = 0.1
#: Weak spread: projection uniformity above this fraction of the value of points spread
#: evenly over their sphere (-3.94 for 128-d projections), measured on 2 CPU cores: the
#: untrained networks of three recipes (flowers 48 px, CIFAR-10 24 px SimCLR and MoCo)
#: gave -0.60 to -1.22 (0.15-0.31 of it); SimCLR runs of 12 to 100 steps -2.38 to -2.97,
#: finished runs -2.8 to -3.6 (0.60-0.91); a 40-step MoCo run that did worse than its
#: untrained network on kNN -0.07.
WEAK_SPREAD_FRACTION = 0.45
#: Dimensional collapse: feature rank below this fraction of the feature width.
DIMENSIONAL_COLLAPSE_FRACTION = 0.02
#: Plateau: this many consecutive measurements with stability above the threshold and
#: feature rank within ``PLATEAU_RANK_CHANGE`` (relative) of each other, while more than
#: ``PLATEAU_MIN_LEFT`` of the run is still ahead (a plateau at the end is the schedule).
PLATEAU_MEASUREMENTS = 4
PLATEAU_STABILITY = 0.9
PLATEAU_RANK_CHANGE = 0.03
PLATEAU_MIN_LEFT = 0.25


@dataclass(frozen=True)
class Finding:
    """One diagnosis.

    Attributes:
        kind: ``collapse``, ``not_spread`` (collapse-like at the first measurement, as an
            untrained network often is), ``weakly_spread`` (projections no more spread out
            than an untrained network's), ``dimensional_collapse`` or ``plateau``.
        step: The step at which it was seen.
        message: What was seen and what to do.
    """

    kind: str
    step: int
    message: str


def diagnose(
    history: Sequence[dict[str, float]],
    feature_dim: int,
    projection_dim: int,
    total_steps: int | None = None,
    sample_size: int | None = None,
    spread_calibrated: bool = True,
) -> list[Finding]:
    """What the latest measurements of a run say, as findings with remedies.

    Args:
        history: Measurements in step order: dicts with ``step`` and the :data:`MEASURES`
            short names (``stability`` may be missing or NaN for the first).
        feature_dim: Width of the backbone features (0: unknown, no dimensional check).
        projection_dim: Width of the projections (0: unknown, no std check).
        total_steps: Planned steps of the run (for the plateau rule); None: unknown.
        sample_size: Images the measures were taken on; None: unknown (at least
            ``2 * COLLAPSE_RANK``). A sample of ``n`` images has rank at most ``n``, so a
            tiny folder's healthy rank is not read as collapse.
        spread_calibrated: Whether the weak-spread rule holds for the run's method
            (:func:`spread_is_calibrated`).

    Returns:
        At most one finding per kind; empty for a healthy run.
    """
    if not history:
        return []
    step = int(history[-1]["step"])
    collapse = _collapse_finding(history[-1], step, feature_dim, projection_dim, sample_size)
    if collapse is not None and collapse.kind == "collapse" and len(history) == 1:
        # Nothing to compare with: a barely trained network maps every image close to one
        # point too (ReLU features share a large positive mean), so this is not yet a verdict.
        return [
            Finding(
                "not_spread",
                step,
                f"not spread yet at step {step}, the first measurement: every image gets "
                "nearly the same embedding, as at random initialisation; train longer. If "
                "later measurements stay this low, try a lower learning rate (--lr) or a "
                "higher temperature (--temperature)",
            )
        ]
    if collapse is not None:
        # A collapsed run is flat too; the plateau advice would only mislead.
        return [collapse]
    weak = _weak_spread_finding(history[-1], step, projection_dim) if spread_calibrated else None
    if weak is not None:
        return [weak]
    plateau = _plateau_finding(history, step, total_steps)
    return [] if plateau is None else [plateau]


def _collapse_finding(
    last: dict[str, float],
    step: int,
    feature_dim: int,
    projection_dim: int,
    sample_size: int | None = None,
) -> Finding | None:
    """Full collapse (ranks or spread near zero), else dimensional collapse, else None."""
    std_floor = collapse_threshold(projection_dim) if projection_dim else 0.0
    collapse_rank, usable_dims = COLLAPSE_RANK, feature_dim
    if sample_size is not None:  # n images span at most n dimensions
        collapse_rank = min(COLLAPSE_RANK, sample_size / 2)
        usable_dims = min(feature_dim, sample_size)
    if (
        last["rank"] < collapse_rank
        or last["rank_projection"] < collapse_rank
        or last["sample_std"] < std_floor
    ):
        return Finding(
            "collapse",
            step,
            f"representation collapse at step {step}: feature rank {last['rank']:.2f}, "
            f"projection rank {last['rank_projection']:.2f}, normalised std "
            f"{last['sample_std']:.2g} (collapsed < {std_floor:.2g}); every image gets "
            "nearly the same embedding. Try a lower learning rate (--lr), a higher "
            "temperature (--temperature), stronger views or a larger batch; this run "
            "will not recover by itself",
        )
    if usable_dims and last["rank"] < DIMENSIONAL_COLLAPSE_FRACTION * usable_dims:
        return Finding(
            "dimensional_collapse",
            step,
            f"dimensional collapse at step {step}: the features use about "
            f"{last['rank']:.1f} of their {feature_dim} dimensions (RankMe). Try stronger "
            "views (--views, --color-jitter-strength), a lower learning rate (--lr) or a "
            "larger batch (--batch-size)",
        )
    return None


def spread_is_calibrated(method: str) -> bool:
    """Whether :data:`WEAK_SPREAD_FRACTION` was calibrated for ``method``: for methods whose
    negatives are the other images of the batch (SimCLR), not a memory bank (MoCo). A
    2-minute MoCo run on 468 grayscale images ended at uniformity -0.3, "barely trained" by
    the rule, and beat a SimCLR run's linear probe (70.0 against 68.3)."""
    return method in METHOD_NAMES and method not in MEMORY_BANK_METHODS


def _weak_spread_finding(last: dict[str, float], step: int, projection_dim: int) -> Finding | None:
    """A ``weakly_spread`` finding where the projections sit as close together as an
    untrained network's (:data:`WEAK_SPREAD_FRACTION`), else None (also for unknown width)."""
    if projection_dim < 2 or not _finite(last.get("uniformity")):
        return None
    even = uniform_sphere_uniformity(projection_dim)
    if last["uniformity"] <= WEAK_SPREAD_FRACTION * even:
        return None
    return Finding(
        "weakly_spread",
        step,
        f"barely spread at step {step}: projection uniformity {last['uniformity']:.2f}, "
        f"above {WEAK_SPREAD_FRACTION * even:.2f}, where untrained networks sit (runs that "
        f"learn go well below it; points spread evenly give {even:.2f}): the features are "
        "likely no better than untrained ones yet. Train longer (more --epochs or a longer "
        "--time-budget); if it stays this way, try a lower learning rate (--lr) or a "
        "higher temperature (--temperature)",
    )


def _plateau_finding(
    history: Sequence[dict[str, float]], step: int, total_steps: int | None
) -> Finding | None:
    """A plateau finding if the last measurements show one, else None.

    A plateau: stable neighbours and a flat rank over the last measurements, with enough
    steps left for stopping early to save time.
    """
    recent = history[-PLATEAU_MEASUREMENTS:]
    left = None if not total_steps else 1 - step / total_steps
    if not (
        len(recent) == PLATEAU_MEASUREMENTS
        and all(_finite(point.get("stability")) for point in recent)
        and min(point["stability"] for point in recent) >= PLATEAU_STABILITY
        and _relative_range([point["rank"] for point in recent]) <= PLATEAU_RANK_CHANGE
        and (left is None or left > PLATEAU_MIN_LEFT)
    ):
        return None
    start = int(recent[0]["step"])
    remaining = f" with {left:.0%} of the steps still to go" if left is not None else ""
    return Finding(
        "plateau",
        step,
        f"plateau since step {start}{remaining}: the neighbours of the sample images "
        f"no longer change (stability >= {PLATEAU_STABILITY}) and the feature rank "
        f"is flat at {history[-1]['rank']:.1f}. If quality is enough, stop early (Ctrl-C "
        "keeps a checkpoint); to learn more, try stronger views, a larger batch or a "
        "higher learning rate",
    )


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _relative_range(values: Sequence[float]) -> float:
    return (max(values) - min(values)) / max(abs(max(values)), 1e-12)


def collapse_threshold(dim: int, fraction: float = COLLAPSE_STD_FRACTION) -> float:
    """The spread of L2-normalised ``dim``-wide embeddings under which a run is collapsed:
    ``fraction`` of the ``1/sqrt(dim)`` that random embeddings have."""
    return fraction / math.sqrt(dim)


@functools.lru_cache(maxsize=16)
def uniform_sphere_uniformity(dim: int, t: float = 2.0) -> float:
    """:func:`~contrastive.evaluation.label_free.uniformity` of points spread evenly over the
    unit sphere in ``dim`` dimensions: the lowest value a large sample can reach (-1.58 in
    2-D, -3.51 in 16-D, -3.94 in 128-D).

    The angle between two uniform points has density proportional to ``sin^(dim-2)``, and
    their squared distance is ``2 - 2 cos``; the mean of the kernel is integrated on a grid.
    """
    if dim < 2:
        raise ValueError(f"the sphere needs at least 2 dimensions, got {dim}")
    angles = np.linspace(0.0, math.pi, 20001, dtype=np.float64)
    density = np.sin(angles) ** (dim - 2)
    kernel = np.exp(-t * (2.0 - 2.0 * np.cos(angles)))
    mean = np.trapezoid(kernel * density, angles) / np.trapezoid(density, angles)
    return float(np.log(mean))
