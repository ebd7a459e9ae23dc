"""Reading, judging, plotting and ranking runs by their logged label-free measures, and the
``contrastive health`` / ``compare-runs`` commands, on hand-written ``metrics.csv`` files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from contrastive.cli import main
from contrastive.evaluation.run_health import (
    RANKING_MEASURE,
    plot_run_health,
    rank_runs,
    read_run_health,
    verdict,
)
from contrastive.training.health_rules import MEASURES


def write_run(
    folder: Path,
    ranks: list[float],
    stability: float = 0.5,
    finished: bool = True,
    uniformity: list[float] | None = None,
) -> Path:
    """A run directory whose metrics.csv holds loss rows and one measurement per rank
    (uniformity ``-2 - rank / 100`` unless given)."""
    folder.mkdir(parents=True)
    columns = ["step", "epoch", "loss", *(measure.metric for measure in MEASURES.values())]
    with open(folder / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        for index, rank in enumerate(ranks):
            step = 10 * (index + 1) - 1
            writer.writerow({"step": step, "epoch": 0, "loss": 5.0 - index})
            writer.writerow(
                {
                    "step": step,
                    "epoch": 0,
                    "monitor/rank": rank,
                    "monitor/rank_projection": rank / 2,
                    "monitor/alignment": 0.5,
                    "monitor/uniformity": (
                        -2.0 - rank / 100 if uniformity is None else uniformity[index]
                    ),
                    "monitor/sample_std": 0.08,
                    "monitor/stability": "" if index == 0 else stability,
                }
            )
    if finished:
        (folder / "backbone.pt").write_bytes(b"")
    return folder


def test_history_is_read_with_global_steps(tmp_path: Path) -> None:
    run = read_run_health(write_run(tmp_path / "a", [10.0, 20.0, 30.0]))

    assert [point["step"] for point in run.history] == [10, 20, 30]
    assert run.final("rank") == 30.0 and run.final("stability") == 0.5
    assert run.loss == [(10, 5.0), (20, 4.0), (30, 3.0)]


def test_compare_runs_orders_best_first_by_the_measure(tmp_path: Path, capsys) -> None:
    runs = {
        name: write_run(tmp_path / name, [5.0, rank])
        for name, rank in (("middle", 40.0), ("best", 60.0), ("worst", 3.0))
    }

    ranked = rank_runs([read_run_health(path) for path in runs.values()], "rank")
    assert [entry.run.run_dir.name for entry in ranked] == ["best", "middle", "worst"]
    # Lower uniformity is better: the same order.
    ranked = rank_runs([read_run_health(path) for path in runs.values()], "uniformity")
    assert [entry.run.run_dir.name for entry in ranked] == ["best", "middle", "worst"]

    assert main(["compare-runs", *map(str, runs.values())]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"ranked by {RANKING_MEASURE}")
    places = [line for line in lines[2:] if not line.startswith("note:")]
    assert [line.split()[1].rsplit("/", 1)[-1] for line in places] == ["best", "middle", "worst"]

    # A folder of runs stands for its runs (before: "needs at least two run directories").
    (tmp_path / "notes").mkdir()
    assert main(["compare-runs", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == lines
    assert f"{tmp_path}: comparing its 3 run(s)" in captured.err


def test_health_command_writes_the_figure_and_a_verdict(tmp_path: Path, capsys) -> None:
    run_dir = write_run(tmp_path / "run", [5.0, 20.0, 40.0])

    assert main(["health", str(run_dir)]) == 0

    output = capsys.readouterr().out
    assert "verdict: still learning" in output
    assert (run_dir / "health.png").stat().st_size > 10_000


def test_health_takes_the_run_as_the_other_commands_name_it(tmp_path: Path, capsys) -> None:
    # Before: "unrecognized arguments: --run" (embed, eval, export and curate take --run).
    run_dir = write_run(tmp_path / "run", [5.0, 20.0, 40.0])

    assert main(["health", "--run", str(run_dir)]) == 0

    assert "verdict: still learning" in capsys.readouterr().out


def test_one_measurement_claims_no_trend(tmp_path: Path) -> None:
    text = verdict(read_run_health(write_run(tmp_path / "run", [30.0])))

    assert "verdict: no collapse; one measurement, so no trend" in text
    assert "settled" not in text


def test_a_one_point_loss_is_drawn_as_a_marker(tmp_path: Path) -> None:
    # A line through one point draws nothing; the loss panel of a short run looked empty.
    figure = plot_run_health(read_run_health(write_run(tmp_path / "run", [30.0])))
    (loss_line,) = figure.axes[0].get_lines()
    assert len(loss_line.get_xdata()) == 1 and loss_line.get_marker() == "o"


def test_one_collapse_like_measurement_is_not_called_collapse(tmp_path: Path) -> None:
    # A 1-epoch run: measured once, early, where an untrained network looks collapsed.
    text = verdict(read_run_health(write_run(tmp_path / "run", [1.0])))

    assert "verdict: not spread yet" in text and "collapsed" not in text


def test_a_run_as_spread_as_an_untrained_one_is_called_barely_trained(tmp_path: Path) -> None:
    # A 12-step run of a few-labels user: uniformity -0.32, kNN at chance.
    run = write_run(tmp_path / "weak", [30.0, 31.0], uniformity=[-0.9, -0.32])
    (run / "config.yaml").write_text("data: images\n")  # 128-d projections by default
    text = verdict(read_run_health(run))
    assert "verdict: barely trained" in text and "barely spread at step 20" in text
    # Every run starts as spread as its untrained network: a later spread clears it.
    later = write_run(tmp_path / "later", [30.0, 31.0], uniformity=[-0.9, -3.0])
    (later / "config.yaml").write_text("data: images\n")
    text = verdict(read_run_health(later))
    assert "barely" not in text and "verdict: still learning" in text


def test_a_moco_run_is_not_judged_by_the_simclr_spread(tmp_path: Path) -> None:
    # A 2-minute MoCo run ended at -0.3 and beat a SimCLR run's linear probe (70.0 vs
    # 68.3): its memory bank spreads the projections less; the rule was set on SimCLR runs.
    run = write_run(tmp_path / "moco", [30.0, 31.0], uniformity=[-0.9, -0.3])
    (run / "config.yaml").write_text("data: images\nmethod:\n  name: moco\n")
    text = verdict(read_run_health(run))
    assert "barely" not in text and "verdict: still learning" in text


def test_verdict_names_collapse(tmp_path: Path) -> None:
    run = read_run_health(write_run(tmp_path / "run", [5.0, 1.0]))

    text = verdict(run)
    assert "verdict: collapsed" in text and "lower learning rate" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["health", "{tmp}/missing"], "run directory not found"),
        (["health", "{tmp}"], "holds no metrics.csv"),
        (["compare-runs", "{tmp}/a", "{tmp}/nothere"], "nothere does not exist"),
        (["compare-runs", "{tmp}/a", "{tmp}/b", "--by", "accuracy"], "unknown measure 'accuracy'"),
        (["compare-runs", "{tmp}/a", "{tmp}/a"], "at least two different run directories"),
        (["compare-runs", "{tmp}/a", "{tmp}/b", "--by", "stability"], "no run has a final stab"),
        (["health", "{tmp}/old"], "has no label-free measures"),
        (["health", "{tmp}/empty"], "metrics.csv is empty: the run logged nothing yet"),
        (["health"], "health needs a run: contrastive health RUN"),
        (["health", "{tmp}/a", "--run", "{tmp}/b"], "two runs given"),
    ],
)
def test_bad_input_gets_one_line_errors(
    tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    write_run(tmp_path / "a", [5.0])  # one measurement: no stability yet
    write_run(tmp_path / "b", [6.0])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.csv").write_text("")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.csv").write_text("step,loss\n0,5.0\n")

    assert main([arg.format(tmp=tmp_path) for arg in args]) == 2

    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error:") and message in error[0]


def test_compare_runs_leaves_out_a_run_without_measures(tmp_path: Path, capsys) -> None:
    write_run(tmp_path / "a", [5.0, 40.0])
    write_run(tmp_path / "b", [5.0, 60.0])
    (tmp_path / "old").mkdir()  # trained with --health-sample-size 0
    (tmp_path / "old" / "metrics.csv").write_text("step,loss\n0,5.0\n")
    (tmp_path / "stopped").mkdir()  # interrupted before its first logged step
    (tmp_path / "stopped" / "config.yaml").write_text("max_steps: 42\n")

    runs = [str(tmp_path / name) for name in ("a", "old", "stopped", "b")]
    assert main(["compare-runs", *runs]) == 0
    captured = capsys.readouterr()
    assert f"warning: {tmp_path / 'old'} left out:" in captured.err
    assert f"warning: {tmp_path / 'stopped'} left out: " in captured.err
    assert "holds no metrics.csv yet: the run logged nothing" in captured.err
    ranked = [line.split()[1].rsplit("/", 1)[-1] for line in captured.out.splitlines()[2:]]
    assert ranked == ["b", "a"]

    assert main(["compare-runs", str(tmp_path / "a"), str(tmp_path / "old")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: compare-runs needs two runs with label-free measures; 1 of")


def test_compare_runs_ranks_each_folders_runs_apart(tmp_path: Path, capsys) -> None:
    runs = {}
    for name, rank, folder in (
        ("cats_a", 40.0, "/data/cats"),
        ("digits_a", 90.0, "/data/digits"),
        ("cats_b", 60.0, "/data/cats"),
        ("digits_b", 10.0, "/data/digits"),
        ("flowers", 50.0, "/data/flowers"),
    ):
        runs[name] = write_run(tmp_path / name, [5.0, rank])
        (runs[name] / "config.yaml").write_text(f"data: {folder}\n")

    assert main(["compare-runs", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "trained on 3 folders; each folder's runs are ranked apart" in captured.err
    sections = captured.out.split("\n\n")
    assert [section.splitlines()[0] for section in sections] == [
        "/data/cats:",
        "/data/digits:",
        "/data/flowers:",
    ]

    def ranked(section: str) -> list[str]:
        places = [line for line in section.splitlines()[3:] if not line.startswith("note:")]
        return [line.split()[1].rsplit("/", 1)[-1] for line in places]

    # One ranking would have put digits_a first and digits_b last, between the cats.
    assert ranked(sections[0]) == ["cats_b", "cats_a"]
    assert ranked(sections[1]) == ["digits_a", "digits_b"]
    assert "flowers: the only run on these images, not ranked" in sections[2]


@pytest.mark.parametrize(
    ("config", "finished", "reason"),
    [
        # Before: every case read "trained without them ... or before they existed".
        ("health_every_n_steps: 400\n", False, "has not measured them yet (logged up to step 22;"),
        ("health_sample_size: 0\n", False, "trained without them (--health-sample-size 0)"),
        ("health_every_n_steps: 400\n", True, "trained before they existed"),
    ],
)
def test_a_run_without_measures_is_told_why(
    tmp_path: Path, capsys, config: str, finished: bool, reason: str
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(config)
    (run / "metrics.csv").write_text("step,loss\n9,5.0\n21,4.5\n")
    if finished:
        (run / "backbone.pt").write_bytes(b"")
    assert main(["health", str(run)]) == 2
    assert reason in capsys.readouterr().err


def test_one_run_is_nothing_to_rank_and_no_failure(tmp_path: Path, capsys) -> None:
    # A nightly "compare everything in runs/" job on its first night.
    write_run(tmp_path / "runs" / "first", [5.0, 4.0])
    assert main(["compare-runs", str(tmp_path / "runs")]) == 0
    assert "only one run" in capsys.readouterr().err
    # A folder that is no run and holds none is refused (it was "only one run", exit 0).
    (tmp_path / "images" / "cats").mkdir(parents=True)
    assert main(["compare-runs", str(tmp_path / "images")]) == 2
    assert "images is not a run directory (no metrics.csv or config.yaml) and holds none" in (
        capsys.readouterr().err
    )


def test_runs_measured_far_shorter_than_the_longest_are_noted(tmp_path: Path, capsys) -> None:
    write_run(tmp_path / "short", [60.0, 65.0])  # steps 9, 19: high rank, barely trained
    write_run(tmp_path / "long", [5.0 + i for i in range(30)])  # to step 300
    assert main(["compare-runs", str(tmp_path / "short"), str(tmp_path / "long")]) == 0
    printed = capsys.readouterr().out
    assert "steps" in printed.splitlines()[1]
    assert f"note: {tmp_path / 'short'} measured under a tenth of the longest run's 300" in printed


def test_health_writes_its_verdict_as_json_and_can_fail_a_collapsed_run(
    tmp_path: Path, capsys
) -> None:
    collapsed = write_run(tmp_path / "collapsed", [5.0, 1.0])
    assert main(["health", str(collapsed)]) == 0  # a verdict, not a failure, by default
    record = json.loads((collapsed / "health.json").read_text())
    assert record["verdict"] == "collapsed" and record["last_step"] == 20
    assert record["final"]["rank"] == 1.0 and record["findings"][0]["kind"] == "collapse"
    assert main(["health", str(collapsed), "--fail-on-collapse"]) == 3
    learning = write_run(tmp_path / "learning", [5.0, 40.0, 60.0])
    assert main(["health", str(learning), "--fail-on-collapse"]) == 0
    assert json.loads((learning / "health.json").read_text())["verdict"] != "collapsed"
    assert "verdict and measures for scripts" in capsys.readouterr().out


def test_a_spread_that_stayed_collapsed_between_measurements_is_called_collapse(
    tmp_path: Path,
) -> None:
    from contrastive.evaluation.run_health import judged

    # A short MoCo run measured once: the one health measurement looks as an untrained
    # network does, but the per-step spread (healthy ~0.088 at 128 dims) stayed collapsed.
    run = read_run_health(write_run(tmp_path / "run", [1.0]))
    run.projection_dim = 128
    run.collapse_std = [(11, 0.0013), (22, 0.0011), (33, 0.0009)]
    kind, _ = judged(run)
    assert kind == "collapsed"
    assert "stayed at 0.0009 up to step 33, under 0.0088" in verdict(run)
    # A run that recovered (its last spreads healthy) keeps the measurement's verdict.
    run.collapse_std = [(11, 0.0013), (22, 0.05), (33, 0.08)]
    assert judged(run)[0] == "not_spread"
    run.projection_dim = 0  # widths unknown (no config.yaml): no threshold, no claim
    run.collapse_std = [(11, 0.0013), (22, 0.0011), (33, 0.0009)]
    assert judged(run)[0] == "not_spread"


def test_collapsed_runs_rank_last_whatever_the_measure_and_methods_are_noted(
    tmp_path: Path,
) -> None:
    from contrastive.evaluation.run_health import comparison_table

    learning = read_run_health(write_run(tmp_path / "learning", [5.0, 40.0, 60.0]))
    collapsed = read_run_health(write_run(tmp_path / "collapsed", [5.0, 1.0]))
    for measure in ("rank", "alignment", "uniformity", RANKING_MEASURE):
        collapsed_first = rank_runs([collapsed, learning], measure)
        assert [entry.run.run_dir.name for entry in collapsed_first] == ["learning", "collapsed"]
    table = comparison_table(rank_runs([collapsed, learning], "alignment"), "alignment")
    assert f"{tmp_path / 'collapsed'} (collapsed)" in table
    assert "ranked last whatever the measure" in table and "different methods" not in table
    learning.method, collapsed.method = "simclr", "moco"
    table = comparison_table(rank_runs([collapsed, learning], "rank"), "rank")
    assert "these runs use different methods (moco, simclr)" in table


def test_a_run_whose_loss_fell_to_zero_is_called_memorised(tmp_path: Path) -> None:
    from contrastive.evaluation.run_health import judged

    # 40 tiny images for 1,240 epochs: every view told apart, nothing general learned;
    # the spread measures alone had called it healthy.
    run = read_run_health(write_run(tmp_path / "run", [5.0, 6.0, 6.0], stability=0.95))
    assert judged(run)[0] == "healthy"
    run.loss = [(100, 0.9), (200, 0.05), (300, 0.02), (400, 0.015)]
    kind, _ = judged(run)
    assert kind == "memorised"
    assert "the training loss fell to 0.015 by step 400" in verdict(run)
    run.loss = [(100, 0.9), (200, 0.05), (300, 0.2), (400, 0.015)]  # one low value: noise
    assert judged(run)[0] == "healthy"


def test_compare_runs_writes_its_ranking_as_json(tmp_path: Path, capsys) -> None:
    for name, rank, folder in (
        ("cats_a", 40.0, "/data/cats"),
        ("cats_b", 60.0, "/data/cats"),
        ("cats_collapsed", 1.0, "/data/cats"),
        ("flowers", 50.0, "/data/flowers"),
    ):
        write_run(tmp_path / "runs" / name, [20.0, rank])  # 20: no early collapse
        (tmp_path / "runs" / name / "config.yaml").write_text(
            f"data: {folder}\nmethod:\n  name: simclr\n"
        )
    (tmp_path / "runs" / "old").mkdir()
    (tmp_path / "runs" / "old" / "metrics.csv").write_text("step,epoch,loss\n0,0,5.0\n")
    target = tmp_path / "ranking.json"

    assert (
        main(["compare-runs", str(tmp_path / "runs"), "--by", "rank", "--json", str(target)]) == 0
    )
    assert f"ranking for scripts: {target}" in capsys.readouterr().err
    record = json.loads(target.read_text())
    assert record["measure"] == "rank"
    cats, flowers = record["folders"]
    assert cats["data"] == "/data/cats" and cats["not_ranked"] == []
    assert [(row["place"], Path(row["run"]).name) for row in cats["ranked"]] == [
        (1, "cats_b"), (2, "cats_a"), (3, "cats_collapsed"),
    ]  # fmt: skip
    best = cats["ranked"][0]
    assert best["value"] == 60.0 and best["final"]["rank"] == 60.0 and best["steps"] == 20
    assert best["method"] == "simclr" and best["finished"] is True
    assert [row["collapsed"] for row in cats["ranked"]] == [False, False, True]
    assert flowers["ranked"] == [] and Path(flowers["not_ranked"][0]).name == "flowers"
    assert [Path(row["run"]).name for row in record["left_out"]] == ["old"]
    assert "no label-free measures" in record["left_out"][0]["reason"]
