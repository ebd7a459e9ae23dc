"""A finished (or running) run's label-free health: read, plotted, judged and compared.

The measures are the ``monitor/*`` columns that
:class:`~contrastive.training.health.HealthMonitor` wrote to ``RUN/metrics.csv``;
``contrastive health RUN`` and ``contrastive compare-runs RUN...`` are built on this module.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from contrastive.errors import ContrastiveError
from contrastive.training.health_rules import (
    COLLAPSE_STD_METRIC,
    MEASURES,
    Finding,
    collapse_threshold,
    diagnose,
    memorised,
    spread_is_calibrated,
)

#: The measure ``compare-runs`` ranks by: RankMe of the projections, the measure whose
#: Spearman rho with kNN top-1 was highest on *both* data sets of ``benchmarks/label_free.py``
#: (+0.51 on CIFAR-10, +0.53 on the digits, 15 runs each; RankMe of the backbone features:
#: +0.40 / +0.20). No measure reached 0.8 on either, so the ranking is a heuristic that
#: catches collapsed and barely trained runs, not a substitute for a labelled evaluation.
RANKING_MEASURE = "rank_projection"


@dataclass
class RunHealth:
    """The health history of one run.

    Attributes:
        run_dir: The run directory.
        history: Measurements in step order: ``step`` and the :data:`MEASURES` short names
            (NaN where a value was not logged).
        loss: ``(step, loss)`` pairs.
        collapse_std: ``(step, std of the L2-normalised projections)`` pairs, logged every
            few steps (:mod:`~contrastive.training.collapse`): a collapse between two health
            measurements, or in a run too short for a second one, shows here.
        data: The run's training folder (from ``config.yaml``; empty if unknown).
        feature_dim: Width of the backbone features (0 if unknown).
        projection_dim: Width of the projections (0 if unknown).
        finished: Whether the run exported its backbone.
        method: The run's method (``simclr``, ``moco``...; empty if unknown).
        spread_calibrated: Whether the weak-spread rule holds for its method
            (:func:`~contrastive.training.health_rules.spread_is_calibrated`).
    """

    run_dir: Path
    history: list[dict[str, float]]
    loss: list[tuple[int, float]] = field(default_factory=list)
    collapse_std: list[tuple[int, float]] = field(default_factory=list)
    data: str = ""
    feature_dim: int = 0
    projection_dim: int = 0
    finished: bool = False
    method: str = ""
    spread_calibrated: bool = True

    @property
    def steps(self) -> int:
        """The last step measured (0 when none)."""
        return int(self.history[-1]["step"]) if self.history else 0

    def final(self, measure: str) -> float:
        """The last logged value of a measure (NaN if never logged)."""
        values = [point[measure] for point in self.history if math.isfinite(point[measure])]
        return values[-1] if values else math.nan


class NoHealthMeasuresError(ContrastiveError):
    """A run that logged no label-free measures (``compare-runs`` leaves it out)."""


def read_run_health(run_dir: str | os.PathLike) -> RunHealth:
    """Reads a run's health history from ``RUN/metrics.csv`` (and widths from its config).

    Raises:
        ContrastiveError: If the folder, its metrics file or the measures are missing.
    """
    folder = Path(run_dir)
    metrics = folder / "metrics.csv"
    if not folder.is_dir():
        raise ContrastiveError(f"run directory not found: {folder}")
    if not metrics.is_file():
        if (folder / "config.yaml").is_file():
            # A run stopped before its first logged step: a run all the same, nothing to read.
            raise NoHealthMeasuresError(
                f"{folder} holds no metrics.csv yet: the run logged nothing (stopped before "
                "its first logged step?)"
            )
        raise ContrastiveError(f"{folder} holds no metrics.csv: not a run directory")
    columns = {name: measure.metric for name, measure in MEASURES.items()}
    history: dict[int, dict[str, float]] = {}
    loss = []
    collapse_std = []
    rows = 0
    try:
        with open(metrics, newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                rows += 1
                step = int(float(row.get("step") or 0)) + 1  # the CSV step is global_step - 1
                if row.get("loss"):
                    loss.append((step, float(row["loss"])))
                if row.get(COLLAPSE_STD_METRIC):
                    collapse_std.append((step, float(row[COLLAPSE_STD_METRIC])))
                for name, column in columns.items():
                    if row.get(column):
                        point = history.setdefault(
                            step, {"step": float(step), **dict.fromkeys(columns, math.nan)}
                        )
                        point[name] = float(row[column])
    except (OSError, ValueError, csv.Error) as error:
        raise ContrastiveError(f"cannot read {metrics}: {error}") from error
    if not rows:
        raise NoHealthMeasuresError(
            f"{metrics} is empty: the run logged nothing yet (stopped before its first "
            "logged step?)"
        )
    if not history:
        last_step = max((step for step, _ in loss), default=0)
        raise NoHealthMeasuresError(
            f"{metrics} has no label-free measures (monitor/rank ...): "
            + _why_no_measures(folder, last_step)
        )
    data, feature_dim, projection_dim, method = _widths(folder)
    return RunHealth(
        run_dir=folder,
        history=[history[step] for step in sorted(history)],
        loss=loss,
        collapse_std=collapse_std,
        data=data,
        feature_dim=feature_dim,
        projection_dim=projection_dim,
        finished=(folder / "backbone.pt").is_file(),
        method=method,
        spread_calibrated=spread_is_calibrated(method) if method else True,
    )


def _why_no_measures(folder: Path, last_step: int) -> str:
    """Why a run's metrics hold no measures: not measured yet (still training), switched
    off, or trained before they existed."""
    config_file = folder / "config.yaml"
    if not config_file.is_file():
        return "the run was trained without them or before they existed"
    from contrastive.training.config import TrainConfig, load_config_file

    config = TrainConfig.from_dict(load_config_file(config_file))
    if config.health_sample_size == 0:
        return "the run was trained without them (--health-sample-size 0)"
    if not (folder / "backbone.pt").is_file():
        return (
            f"the run has not measured them yet (logged up to step {last_step}; they come "
            f"every {config.health_every_n_steps} steps and at the end): if it is still "
            "training, ask again later"
        )
    return "the run was trained before they existed"


def _widths(folder: Path) -> tuple[str, int, int, str]:
    """The run's data folder, feature and projection widths and method, from
    ``config.yaml``."""
    config_file = folder / "config.yaml"
    if not config_file.is_file():
        return "", 0, 0, ""
    from contrastive.backbone_config import known_feature_width
    from contrastive.training.config import TrainConfig, load_config_file

    config = TrainConfig.from_dict(load_config_file(config_file))
    feature_dim = known_feature_width(config.backbone)
    if feature_dim is None:  # not a ResNet: built to read its width (imports torch)
        from contrastive.backbones import build_backbone

        _backbone, feature_dim = build_backbone(config.backbone)
    return config.data, feature_dim, config.method.projection_output_dim, config.method.name


def findings(run: RunHealth) -> list[Finding]:
    """The first finding of each kind over the run's history (each prefix diagnosed).

    A weak spread is the last measurement's, or none where that one shows none: every run
    starts as spread as its untrained network.
    """
    total = int(run.history[-1]["step"]) if run.finished else None
    first: dict[str, Finding] = {}
    latest: list[Finding] = []
    for end in range(1, len(run.history) + 1):
        latest = diagnose(
            run.history[:end],
            run.feature_dim,
            run.projection_dim,
            total_steps=total,
            spread_calibrated=run.spread_calibrated,
        )
        for finding in latest:
            first.setdefault(finding.kind, finding)
    first.pop("weakly_spread", None)
    first.update({f.kind: f for f in latest if f.kind == "weakly_spread"})
    collapsed = _collapsed_at_the_end(run)
    if collapsed is not None and "collapse" not in first:
        first = {"collapse": collapsed, **first}
        first.pop("not_spread", None)  # not "as an untrained network": it stayed collapsed
    memorised = _memorised(run)
    if memorised is not None:
        first[memorised.kind] = memorised
    return list(first.values())


def _memorised(run: RunHealth) -> Finding | None:
    """A finding where the last logged losses fell to near zero."""
    if not memorised([value for _, value in run.loss]):
        return None
    step, value = run.loss[-1]
    return Finding(
        "memorised",
        step,
        f"memorised: the training loss fell to {value:.3g} by step {step}, so the network "
        "tells its training images apart almost surely; on few images that needs no general "
        "features (40 tiny images at loss 0.015 scored 31 points under raw pixels): compare "
        "with raw pixels (contrastive eval knn --baselines) before using it, or train on more "
        "images",
    )


def _collapsed_at_the_end(run: RunHealth, last: int = 3) -> Finding | None:
    """A collapse finding where the run's last ``last`` per-step spreads are all under the
    collapse monitor's threshold (the warning training gives, read back from the CSV)."""
    if not run.projection_dim or len(run.collapse_std) < last:
        return None
    threshold = collapse_threshold(run.projection_dim)
    tail = run.collapse_std[-last:]
    if max(value for _, value in tail) >= threshold:
        return None
    step, value = tail[-1]
    return Finding(
        "collapse",
        step,
        f"collapse: the projections' spread ({COLLAPSE_STD_METRIC}) stayed at {value:.2g} up to "
        f"step {step}, under {threshold:.2g} (healthy ~{1 / math.sqrt(run.projection_dim):.2g}); "
        "try a lower learning rate, a higher temperature or stronger augmentations",
    )


def verdict(run: RunHealth) -> str:
    """A few lines: the final measures, their trend and what to do."""
    last = run.history[-1]
    width = f" of {run.feature_dim}" if run.feature_dim else ""
    plural = "" if len(run.history) == 1 else "s"
    lines = [
        f"{run.run_dir}: {len(run.history)} measurement{plural} up to step {int(last['step'])}"
        f"{'' if run.finished else ' (unfinished)'}",
        f"  rank {last['rank']:.1f}{width} (projections {last['rank_projection']:.1f}), "
        f"alignment {last['alignment']:.3f}, uniformity {last['uniformity']:.3f}, "
        f"stability {_shown(last['stability'])}",
    ]
    found = findings(run)
    lines.append(f"verdict: {judged(run, found)[1]}")
    lines += [f"  - {finding.message}" for finding in found]
    return "\n".join(lines)


#: Verdicts of a run that learns nothing useful (``health --fail-on-collapse`` exits 3).
COLLAPSED_VERDICTS = frozenset({"collapsed", "dimensional_collapse"})


def judged(run: RunHealth, found: Sequence[Finding] | None = None) -> tuple[str, str]:
    """``(verdict, its sentence)``: ``collapsed``, ``dimensional_collapse``, ``memorised``,
    ``not_spread``, ``barely_trained``, ``plateau``, ``one_measurement``, ``still_learning``
    or ``healthy``."""
    found = findings(run) if found is None else found
    kinds = {finding.kind for finding in found}
    last = run.history[-1]
    if "collapse" in kinds:
        return "collapsed", "collapsed, not learning a useful representation"
    if "dimensional_collapse" in kinds:
        return "dimensional_collapse", "dimensional collapse, not learning a useful representation"
    if "memorised" in kinds:
        return "memorised", "memorised its training images (loss near zero): not to be trusted"
    if "not_spread" in kinds:
        return "not_spread", "not spread yet (one measurement, as an untrained network looks)"
    if "weakly_spread" in kinds:
        return "barely_trained", (
            "barely trained (its projections are as close together as an untrained network's)"
        )
    if "plateau" in kinds:
        return "plateau", "learning, but it plateaued well before the end"
    if len(run.history) < 2:
        return "one_measurement", (
            "no collapse; one measurement, so no trend to judge (measure more often with "
            "--health-every-n-steps; measurements past --health-max-share of the training "
            "time, 3% by default, are skipped)"
        )
    if run.history[0]["rank"] < last["rank"] and not (last["stability"] >= 0.9):
        return "still_learning", (
            "still learning (rank rising, neighbours still changing); a longer run would "
            "probably help"
        )
    return "healthy", "healthy; the representation has settled"


def health_record(run: RunHealth) -> dict[str, Any]:
    """The verdict, findings and final measures as JSON-ready data (``RUN/health.json``)."""
    found = findings(run)
    kind, sentence = judged(run, found)
    return {
        "run": str(run.run_dir),
        "verdict": kind,
        "verdict_text": sentence,
        "findings": [{"kind": f.kind, "message": f.message} for f in found],
        "measurements": len(run.history),
        "last_step": int(run.history[-1]["step"]),
        "finished": run.finished,
        "final": _final_measures(run),
    }


def _final_measures(run: RunHealth) -> dict[str, float | None]:
    """Each measure's final value, None where the run has none (JSON has no NaN)."""
    return {name: _finite(run.final(name)) for name in MEASURES}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _shown(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "-"


def plot_run_health(run: RunHealth) -> Figure:
    """Loss, rank, alignment/uniformity and stability over training, as one figure."""
    figure = Figure(figsize=(11, 7), layout="constrained")
    axes = figure.subplots(2, 2)
    steps = [point["step"] for point in run.history]

    def series(name: str) -> list[float]:
        return [point[name] for point in run.history]

    loss_axes, rank_axes, geometry_axes, stability_axes = axes.flatten()
    if run.loss:
        # A line of one point draws nothing: a short run's loss would look like an empty panel.
        loss_axes.plot(*zip(*run.loss), color="tab:gray", marker="o" if len(run.loss) < 10 else "")
    loss_axes.set(title="training loss", xlabel="step")
    rank_axes.plot(steps, series("rank"), marker="o", label="backbone features")
    rank_axes.plot(steps, series("rank_projection"), marker="o", label="projections")
    if run.feature_dim:
        rank_axes.axhline(run.feature_dim, color="tab:blue", linestyle=":", linewidth=1)
    rank_axes.set(title="effective rank (RankMe), higher is better", xlabel="step")
    rank_axes.legend()
    geometry_axes.plot(steps, series("alignment"), marker="o", label="alignment", color="tab:red")
    geometry_axes.plot(
        steps, series("uniformity"), marker="o", label="uniformity", color="tab:purple"
    )
    geometry_axes.set(title="alignment / uniformity, lower is better", xlabel="step")
    geometry_axes.legend()
    stability_axes.plot(steps, series("stability"), marker="o", color="tab:green")
    stability_axes.set(
        title="neighbour stability (1 = neighbours no longer change)", xlabel="step", ylim=(0, 1.05)
    )
    figure.suptitle(f"label-free health of {run.run_dir.name}")
    return figure


@dataclass(frozen=True)
class RankedRun:
    """One run in a comparison.

    Attributes:
        run: Its health.
        value: Its final value of the ranking measure.
        collapsed: Whether :func:`judged` calls it collapsed (ranked last whatever the
            measure).
    """

    run: RunHealth
    value: float
    collapsed: bool = False


def rank_runs(runs: Sequence[RunHealth], measure: str = RANKING_MEASURE) -> list[RankedRun]:
    """Runs ordered best first by the final value of a label-free measure.

    Raises:
        ContrastiveError: For an unknown measure, or one that no run has a value of.
    """
    if measure not in MEASURES:
        raise ContrastiveError(f"unknown measure {measure!r}; choose one of {', '.join(MEASURES)}")
    sign = -1.0 if MEASURES[measure].higher_is_better else 1.0
    # Judged once per run: each verdict diagnoses every prefix of the run's history.
    ranked = [RankedRun(run, run.final(measure), is_collapsed(run)) for run in runs]
    if not any(math.isfinite(entry.value) for entry in ranked):
        # A "best first" order of nothing but NaN would look like a verdict.
        raise ContrastiveError(
            f"no run has a final {measure} to rank by (it needs two measurements or more); "
            f"choose another measure: {', '.join(name for name in MEASURES if name != measure)}"
        )
    # Collapsed runs go last whatever the measure (a collapsed run's alignment is perfect,
    # and by rank it came first), then runs without the value.
    return sorted(
        ranked,
        key=lambda r: (
            r.collapsed,
            not math.isfinite(r.value),
            sign * r.value if math.isfinite(r.value) else 0,
        ),
    )


def is_collapsed(run: RunHealth) -> bool:
    """Whether :func:`judged` calls the run collapsed (fully or dimensionally)."""
    return judged(run)[0] in COLLAPSED_VERDICTS


def ranking_record(ranked: Sequence[RankedRun], measure: str) -> list[dict[str, Any]]:
    """Ranked runs as JSON-ready rows, best first (``compare-runs --json``): what the table
    shows, with the collapse judgement and the run's method as fields of their own."""
    return [
        {
            "place": place,
            "run": str(entry.run.run_dir),
            "value": _finite(entry.value),
            "collapsed": entry.collapsed,
            "steps": entry.run.steps,
            "finished": entry.run.finished,
            "method": entry.run.method or None,
            "final": _final_measures(entry.run),
        }
        for place, entry in enumerate(ranked, start=1)
    ]


def comparison_table(ranked: Sequence[RankedRun], measure: str) -> str:
    """A text table of ranked runs with every final measure."""
    names = list(MEASURES)
    header = f"{'#':>2}  {'run':<30}{'steps':>8}" + "".join(f"{name:>16}" for name in names)
    lines = [f"ranked by {measure} ({MEASURES[measure].description}), best first:", header]
    for place, entry in enumerate(ranked, start=1):
        values = "".join(f"{entry.run.final(name):>16.4g}" for name in names)
        name = f"{entry.run.run_dir}{' (collapsed)' if entry.collapsed else ''}"
        lines.append(f"{place:>2}  {name:<30}{entry.run.steps:>8}{values}")
    if any(entry.collapsed for entry in ranked):
        lines.append(
            "note: runs marked (collapsed) are ranked last whatever the measure (`contrastive "
            "health RUN` says why)"
        )
    methods = sorted({entry.run.method for entry in ranked if entry.run.method})
    if len(methods) > 1:
        # MoCo's projections are less spread than SimCLR's while it learns (README).
        lines.append(
            f"note: these runs use different methods ({', '.join(methods)}): their spread "
            "measures are not on one scale; rank each method's runs apart, or compare them "
            "with labels (contrastive eval knn)"
        )
    longest = max((entry.run.steps for entry in ranked), default=0)
    short = [entry.run for entry in ranked if entry.run.steps * 10 < longest]
    if short:
        # A network barely trained can score high on rank: its features are still spread at
        # random (three 10-step runs were ranked above a 1,717-step one).
        lines.append(
            f"note: {', '.join(str(run.run_dir) for run in short[:3])}"
            f"{' ...' if len(short) > 3 else ''} measured under a tenth of the longest run's "
            f"{longest} steps: a barely trained network's measures say little; compare runs "
            "of similar length"
        )
    return "\n".join(lines)
