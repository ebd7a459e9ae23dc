"""Arguments shared by ``embed`` and ``eval``: refused up front, naming the flag."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest
import torch

from contrastive.cli import main
from contrastive.cli.embed import resolve_device, show_progress
from contrastive.errors import ContrastiveError


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["--batch-size", "-3"], "argument --batch-size: must be at least 1, got -3"),
        (["--batch-size", "x"], "argument --batch-size: expected a whole number, got 'x'"),
    ],
)
def test_bad_batch_sizes_are_refused_by_the_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["embed", "--run", str(tmp_path), "--data", str(tmp_path), "--out", "e.npz", *args])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [["embed", "--run", "r", "--data", "d"], ["eval", "knn", "--train", "a", "--test", "b"]],
)
def test_an_output_file_where_a_folder_stands_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture, command: list[str]
) -> None:
    folder = tmp_path / "result.npz"
    folder.mkdir()
    with pytest.raises(SystemExit) as stop:
        main([*command, "--out", str(folder)])
    assert stop.value.code == 2
    assert f"{folder} is a folder; give a file name" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["embed", "--run", "r", "--data", "d", "--out"], "--out"),
        (["embed", "--run", "r", "--data", "d", "--out", "e.npz", "--projector"], "--projector"),
        (["eval", "knn", "--train", "a", "--test", "b", "--out"], "--out"),
        (["health", "run", "--out"], "--out"),
        (["export", "run", "--out"], "--out"),
        (["curate", "--run", "r", "--data", "d", "--out"], "--out"),
    ],
)
def test_outputs_that_cannot_be_written_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture, command: list[str], flag: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as stop:
        main([*command, str(blocker / "below" / "result")])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert (
        f"argument {flag}: cannot write {blocker}/below/result: {blocker} is not writable" in error
    )


@pytest.mark.parametrize(
    "command", [["embed", "--run", "r", "--data", "d", "--out", "e.npz", "--projector"]]
)
def test_an_output_folder_where_a_file_stands_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, command: list[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SystemExit):
        main([*command, str(blocker)])
    assert f"{blocker} is a file; give a folder" in capsys.readouterr().err


def test_devices_are_named_in_errors() -> None:
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ContrastiveError, match="--device tpu: not a device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ContrastiveError, match="--device cuda:1: CUDA is not available"):
            resolve_device("cuda:1")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_are_drawn_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = argparse.Namespace(no_progress=False)
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert show_progress(shown)
    assert not show_progress(argparse.Namespace(no_progress=True))
    # A cron job's log file: carriage-return frames would fill it.
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not show_progress(shown)


@pytest.mark.parametrize(
    ("arguments", "verbose"),
    [
        (["-v", "eval", "knn", "--train", "a", "--test", "b"], True),
        (["eval", "knn", "--train", "a", "--test", "b", "-v"], True),  # was: unrecognized
        (["train", "--verbose", "--data", "x"], True),
        (["eval", "knn", "--train", "a", "--test", "b"], False),
    ],
)
def test_verbose_is_taken_before_or_after_the_command(arguments: list[str], verbose: bool) -> None:
    from contrastive.cli import build_parser

    assert build_parser().parse_args(arguments).verbose is verbose


@pytest.mark.parametrize(
    ("arguments", "command"),
    [
        (["health", "run", "--bogus"], "contrastive health"),
        (["eval", "knn", "--train", "a", "--test", "b", "--bogus"], "contrastive eval knn"),
        (["cache", "list", "--bogus"], "contrastive cache list"),
        (["--bogus"], "contrastive"),
    ],
)
def test_an_unknown_argument_points_to_its_commands_help(
    capsys: pytest.CaptureFixture, arguments: list[str], command: str
) -> None:
    # Before: "(see `contrastive --help`)", whose list holds no command's options.
    with pytest.raises(SystemExit) as stop:
        main(arguments)
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error == f"error: unrecognized arguments: --bogus (see `{command} --help`)\n"
