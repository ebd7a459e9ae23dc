"""``contrastive health RUN`` and ``contrastive compare-runs RUN...``: label-free run health."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contrastive.cli.arguments import add_run_argument, given_run, output_file
from contrastive.cli.commands import COMMANDS

HEALTH_HELP = COMMANDS["health"].help
COMPARE_HELP = COMMANDS["compare-runs"].help


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``health`` and ``compare-runs``."""
    health = subparsers.add_parser("health", help=HEALTH_HELP, description=HEALTH_HELP + ".")
    add_run_argument(health, "run directory (holds metrics.csv)")
    health.add_argument(
        "--out",
        type=output_file,
        help="figure to write (default: RUN/health.png; .png, .pdf, .svg)",
    )
    health.add_argument(
        "--fail-on-collapse",
        action="store_true",
        help="exit with status 3 when the verdict is collapse (for a cron job to alert on); "
        "the verdict and measures are written as JSON beside the figure either way",
    )
    health.set_defaults(func=run_health)

    compare = subparsers.add_parser("compare-runs", help=COMPARE_HELP, description=COMPARE_HELP)
    compare.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="run directories, or a folder holding runs (each of its runs is compared)",
    )
    compare.add_argument(
        "--by",
        metavar="MEASURE",
        help="measure to rank by: rank, rank_projection, alignment, uniformity, sample_std, "
        "stability (default: rank_projection, RankMe of the projections: the measure that "
        "tracked kNN accuracy best in benchmarks/label_free.py, rho ~0.5)",
    )
    compare.add_argument(
        "--json",
        type=output_file,
        metavar="FILE",
        help="also write the ranking as JSON (each folder's runs in order, with their final "
        "measures and whether they collapsed), for a script to read",
    )
    compare.set_defaults(func=run_compare)


#: ``health --fail-on-collapse``'s exit status for a collapsed run (2 is a refused input).
COLLAPSED_EXIT = 3


def run_health(args: argparse.Namespace) -> int:
    from contrastive.evaluation.report import write_report
    from contrastive.evaluation.run_health import (
        COLLAPSED_VERDICTS,
        health_record,
        plot_run_health,
        read_run_health,
        verdict,
    )
    from contrastive.files import save_figure

    folder = given_run(args)
    run = read_run_health(folder)
    target = save_figure(plot_run_health(run), args.out or folder / "health.png")
    record = health_record(run)
    record_path = target.with_suffix(".json")
    write_report(record, record_path)
    print(verdict(run))
    print(f"figure: {target}; verdict and measures for scripts: {record_path}")
    if args.fail_on_collapse and record["verdict"] in COLLAPSED_VERDICTS:
        return COLLAPSED_EXIT
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from contrastive.errors import ContrastiveError
    from contrastive.evaluation.run_health import (
        RANKING_MEASURE,
        NoHealthMeasuresError,
        comparison_table,
        rank_runs,
        ranking_record,
        read_run_health,
    )
    from contrastive.training.health_rules import MEASURES

    missing = [str(path) for path in args.runs if not path.exists()]
    if missing:
        raise ContrastiveError(f"compare-runs: {', '.join(missing)} does not exist")
    given = [run for path in args.runs for run in _runs_in(path)]
    if len(given) == 1 and not _is_run(given[0]):
        raise ContrastiveError(
            f"compare-runs: {given[0]} is not a run directory (no metrics.csv or config.yaml) "
            "and holds none"
        )
    if len(given) == 1:
        # A nightly "compare everything in runs/" job on its first night: nothing to rank,
        # nothing wrong either.
        print(
            f"only one run ({given[0]}): nothing to rank; `contrastive health {given[0]}` "
            "shows its measures",
            file=sys.stderr,
        )
        return 0
    measure = args.by or RANKING_MEASURE
    unique = list(dict.fromkeys(run.resolve() for run in given))
    if len(unique) < 2:
        raise ContrastiveError("compare-runs needs at least two different run directories")
    if len(unique) < len(given):
        print("warning: a run given twice is ranked once", file=sys.stderr)
    runs, left_out = [], []
    for run in unique:
        try:
            runs.append(read_run_health(run))
        except NoHealthMeasuresError as error:
            # One run without measures should not hide the ranking of the others.
            print(f"warning: {run} left out: {error}", file=sys.stderr)
            left_out.append({"run": str(run), "reason": str(error)})
    if len(runs) < 2:
        raise ContrastiveError(
            f"compare-runs needs two runs with label-free measures; {len(runs)} of the "
            f"{len(unique)} runs have them"
        )
    by_folder: dict[str | None, list] = {}
    for run in runs:
        by_folder.setdefault(run.data or None, []).append(run)
    widths = sorted({run.feature_dim for run in runs if run.feature_dim})
    if measure == "rank" and len(widths) > 1:
        print(
            "warning: rank counts used dimensions, and these runs have "
            f"{' and '.join(map(str, widths))}-d features: a wider run can reach a higher rank",
            file=sys.stderr,
        )
    unfinished = [str(run.run_dir) for run in runs if not run.finished]
    if unfinished:
        print(f"warning: unfinished run(s): {', '.join(unfinished)}", file=sys.stderr)
    # Measures of runs on different images are not comparable: one ranking per folder.
    groups = [
        (folder, rank_runs(members, measure) if len(members) > 1 else [], members)
        for folder, members in sorted(by_folder.items(), key=lambda item: item[0] or "~")
    ]
    if len(groups) == 1:
        print(comparison_table(groups[0][1], measure))
    else:
        print(
            f"the runs trained on {len(groups)} folders; each folder's runs are ranked apart",
            file=sys.stderr,
        )
        for index, (folder, ranked, members) in enumerate(groups):
            gap = "\n" if index else ""
            print(f"{gap}{folder or 'folder not recorded (no config.yaml)'}:")
            if ranked:
                print(comparison_table(ranked, measure))
            else:
                print(f"  {members[0].run_dir}: the only run on these images, not ranked")
    if args.json:
        from contrastive.evaluation.report import write_report

        folders = [
            {
                "data": folder,
                "ranked": ranking_record(ranked, measure),
                "not_ranked": [] if ranked else [str(members[0].run_dir)],
            }
            for folder, ranked, members in groups
        ]
        write_report(
            {
                "measure": measure,
                "description": MEASURES[measure].description,
                "folders": folders,
                "left_out": left_out,
            },
            args.json,
        )
        print(f"ranking for scripts: {args.json}", file=sys.stderr)
    return 0


def _is_run(path: Path) -> bool:
    """Whether ``path`` is a run directory: any of its files marks one (an interrupted run
    may lack the others)."""
    from contrastive.data.image_files import RUN_MARKER

    return path.is_dir() and any(
        (path / name).exists() for name in ("metrics.csv", "config.yaml", RUN_MARKER)
    )


def _runs_in(path: Path) -> list[Path]:
    """``[path]`` for a run directory; for a folder of runs (``runs/``), its runs, sorted."""
    if not path.is_dir() or _is_run(path):
        return [path]
    runs = sorted(child for child in path.iterdir() if _is_run(child))
    if runs:
        print(f"{path}: comparing its {len(runs)} run(s)", file=sys.stderr)
    return runs or [path]
