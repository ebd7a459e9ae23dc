"""The command table: what ``contrastive --help`` lists, and that answering it, a mistyped
command or a light command imports no torch (a fresh interpreter each)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from contrastive.cli import _suggestion, build_parser
from contrastive.cli.commands import COMMAND_MODULES, COMMANDS, command_in


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _help_lines(parser: argparse.ArgumentParser) -> dict[str, str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {choice.dest: choice.help for choice in action._choices_actions}


def test_the_table_names_every_command_the_modules_register_with_their_help() -> None:
    full = build_parser()
    assert list(_commands(full)) == list(COMMANDS)
    assert _help_lines(full) == {name: command.help for name, command in COMMANDS.items()}
    assert COMMAND_MODULES == (
        "train",
        "demo",
        "embed",
        "evaluate",
        "health",
        "export",
        "curate",
        "cache",
    )


def test_a_named_command_gets_its_full_parser_and_the_others_their_help_line() -> None:
    parser = build_parser("compare-runs")
    commands = _commands(parser)
    assert list(commands) == list(COMMANDS)
    # health.py registers both of its commands, in full.
    assert "--fail-on-collapse" in commands["health"].format_help()
    assert "--by MEASURE" in commands["compare-runs"].format_help()
    assert "--time-budget" not in commands["train"].format_help()
    assert _help_lines(parser) == _help_lines(build_parser())
    args = parser.parse_args(["compare-runs", "a", "b", "--by", "rank"])
    assert args.runs == [Path("a"), Path("b")] and args.by == "rank"


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["train", "--data", "x"], "train"),
        (["-v", "eval", "knn"], "eval"),
        (["--help"], None),
        (["-v", "--help", "train"], None),
        (["trian"], None),
        ([], None),
        (["compare-runs", "r"], "compare-runs"),
    ],
)
def test_command_in(argv: list[str], command: str | None) -> None:
    assert command_in(argv) == command


def _run_cli(*argv: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Runs the command line in a fresh interpreter; whether it imported torch."""
    code = (
        "import sys\n"
        "from contrastive.cli import main\n"
        "try:\n"
        f"    code = main({list(argv)!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return result, "torch imported: True" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["health", "--help"],
        ["compare-runs", "--help"],
        ["cache", "clean", "--help"],
        ["train", "--help"],
        ["embed", "--help"],
        ["export", "--help"],
        ["demo", "--help"],
        ["eval", "--help"],
        ["eval", "knn", "--help"],
        ["eval", "linear", "--help"],
        ["eval", "fewshot", "--help"],
        ["curate", "--help"],
    ],
)
def test_help_of_the_command_list_and_of_light_commands_imports_no_torch(argv: list[str]) -> None:
    result, imported = _run_cli(*argv)
    assert result.returncode == 0, result.stderr
    assert not imported
    assert "usage: contrastive" in result.stdout


def test_the_command_list_shows_every_command_with_its_help() -> None:
    result, _ = _run_cli("--help")
    text = " ".join(result.stdout.split())
    for name, command in COMMANDS.items():
        assert f"{name} {command.help}" in text
    assert "`contrastive COMMAND --help` lists a command's options" in text


def test_a_mistyped_command_is_named_with_the_choices_and_imports_no_torch() -> None:
    result, imported = _run_cli("trian", "--data", "x")
    assert result.returncode == 2 and not imported
    assert "invalid choice: 'trian'" in result.stderr and "'train'" in result.stderr
    assert "did you mean 'train'?" in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["eval", "knn", "--train", "a", "--test", "b", "--temperature", "0"],
            "argument --temperature: expected a finite number > 0",
        ),
        (
            ["eval", "fewshot", "--train", "a", "--test", "b", "--counts", "1,0"],
            "argument --counts: counts: expected positive integers or 'all', got '0'",
        ),
        (
            ["eval", "linear", "--train", "a", "--test", "b", "--val-fraction", "1"],
            "argument --val-fraction: expected a number in (0, 1)",
        ),
        (
            ["curate", "--out", "r", "--select-method", "typiclst"],
            "argument --select-method: invalid choice: 'typiclst'",
        ),
    ],
)
def test_a_bad_evaluation_or_curation_flag_is_refused_without_torch(
    argv: list[str], message: str
) -> None:
    result, imported = _run_cli(*argv)
    assert result.returncode == 2 and not imported
    assert message in result.stderr


@pytest.mark.parametrize(
    ("message", "suggestion"),
    [
        ("argument --method: invalid choice: 'simclrr' (choose from 'moco', 'simclr')", "simclr"),
        ("argument --method: invalid choice: 'mocco' (choose from moco, simclr)", "moco"),
        ("argument --method: invalid choice: 'byol' (choose from 'moco', 'simclr')", None),
        ("the following arguments are required: --data", None),
    ],
)
def test_a_near_miss_gets_a_suggestion(message: str, suggestion: str | None) -> None:
    expected = "" if suggestion is None else f"; did you mean '{suggestion}'?"
    assert _suggestion(message) == expected


def test_cache_list_imports_no_torch(tmp_path: Path) -> None:
    result, imported = _run_cli("cache", "list", "--cache-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert not imported


def _health_run(folder: Path, backbone: str) -> Path:
    """A finished run's metrics (two measurements) and the config.yaml a run writes."""
    folder.mkdir(parents=True)
    header = "step,epoch,loss,monitor/rank,monitor/rank_projection,monitor/alignment,"
    header += "monitor/uniformity,monitor/sample_std,monitor/stability"
    # A feature rank of 5: dimensional collapse for 512-d features (under 2% of them), not
    # for 128-d ones.
    rows = ["9,0,5.0,,,,,,", "9,0,,5,15,0.5,-3.0,0.08,", "19,0,4.0,,,,,,"]
    rows.append("19,0,,5.1,16,0.5,-3.1,0.08,0.6")
    (folder / "metrics.csv").write_text("\n".join([header, *rows]) + "\n")
    (folder / "config.yaml").write_text(
        f"data: images\nbackbone:\n  name: {backbone}\n  small_image_stem: true\n"
    )
    (folder / "backbone.pt").write_bytes(b"")
    return folder


def test_health_and_compare_runs_of_resnet_runs_import_no_torch(tmp_path: Path) -> None:
    first = _health_run(tmp_path / "first", "resnet10_quarter")
    second = _health_run(tmp_path / "second", "resnet18")

    # The widths come from the names (128 and 512), so the verdicts differ.
    verdicts = {}
    for run in (first, second):
        result, imported = _run_cli("health", str(run))
        assert result.returncode == 0, result.stderr
        assert not imported
        assert (run / "health.png").is_file()
        verdicts[run.name] = json.loads((run / "health.json").read_text())["verdict"]
    assert verdicts == {"first": "still_learning", "second": "dimensional_collapse"}

    result, imported = _run_cli("compare-runs", str(first), str(second))
    assert result.returncode == 0, result.stderr
    assert not imported
    assert str(first) in result.stdout and str(second) in result.stdout
