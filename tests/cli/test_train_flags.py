"""``contrastive train`` flags, generated from the :class:`TrainConfig` dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from contrastive.cli import build_parser, main
from contrastive.cli.config_flags import attribute_docs, config_flags
from contrastive.cli.train import FLAGS, NO_FLAG, _recipe_config, config_from_args
from contrastive.recipes import cpu_budget_recipe
from contrastive.training.config import TrainConfig


def train_parser() -> argparse.ArgumentParser:
    subparsers = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    return subparsers.choices["train"]


def train_config(*flags: str) -> TrainConfig:
    args = build_parser().parse_args(["train", "--data", "x", "--out", "y", *flags])
    return config_from_args(args, base=_recipe_config(args))


def leaf_paths(config: object, prefix: str = "") -> list[str]:
    paths = []
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            paths += leaf_paths(value, f"{prefix}{field.name}.")
        else:
            paths.append(prefix + field.name)
    return paths


def test_every_config_field_has_a_documented_flag() -> None:
    flags = {flag.path: flag for flag in config_flags(TrainConfig, FLAGS, exclude=NO_FLAG)}
    assert sorted(flags) == sorted(set(leaf_paths(TrainConfig())) - set(NO_FLAG))
    parser_dests = {action.dest for action in train_parser()._actions}
    assert set(flags) <= parser_dests
    undocumented = [path for path, flag in flags.items() if not flag.help]
    assert not undocumented, "add these fields to their class docstring's Attributes section"


def test_flag_names_used_in_docs_and_tests_stay() -> None:
    options = set(train_parser()._option_string_actions)
    used = {
        "--data",
        "--out",
        "--config",
        "--recipe",
        "--resume",
        "--seed",
        "--deterministic",
        "--method",
        "--loss",
        "--distance",
        "--temperature",
        "--backbone",
        "--small-image-stem",
        "--queue-size",
        "--views",
        "--input-size",
        "--eval-input-size",
        "--noise-probability",
        "--noise-sigma",
        "--batch-size",
        "--epochs",
        "--time-budget",
        "--lr",
        "--optimizer",
        "--weight-decay",
        "--num-workers",
        "--accelerator",
        "--devices",
        "--num-nodes",
        "--sync-batchnorm",
        "--precision",
        "--view-pipeline",
        "--cache",
        "--no-cache",
        "--cache-dir",
        "--compile",
        "--checkpoint-every",
        "--val-train",
        "--val-test",
        "--monitor-every",
        "--stored-size",
    }
    assert used <= options, used - options


def test_help_shows_the_dataclass_defaults() -> None:
    text = " ".join(train_parser().format_help().split())
    assert "(default: None)" not in text
    assert "--lr X Learning rate for a batch of 256. (default: 0.12)" in text
    assert "--noise-sigma MIN MAX Range of the noise's standard deviation" in text
    assert "(default: 0.01 0.05)" in text
    assert "--cache, --no-cache" in text and "(default: on)" in text
    assert "--method {moco,simclr}" in text and "(default: simclr)" in text
    for title in ("data and run", "method", "views", "optimisation", "hardware"):
        assert f"\n{title}:" in train_parser().format_help()


def test_docstring_attributes_are_parsed_with_continuation_lines() -> None:
    docs = attribute_docs(TrainConfig)
    assert docs["epochs"] == "Passes over the data."
    assert docs["time_budget"].startswith("Wall-clock budget for the whole run (")
    assert docs["time_budget"].endswith("Overrides epochs.")
    assert "``" not in " ".join(docs.values())


def test_a_flag_overrides_the_config_file_and_unset_flags_keep_it(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(
        yaml.safe_dump(
            {"epochs": 7, "optim": {"base_learning_rate": 0.5, "momentum": 0.8}, "seed": 3}
        )
    )
    config = train_config("--recipe", "default", "--config", str(file), "--lr", "0.2")
    assert config.optim.base_learning_rate == 0.2
    assert (config.epochs, config.optim.momentum, config.seed) == (7, 0.8, 3)
    reset = train_config("--recipe", "default", "--config", str(file), "--no-deterministic")
    assert reset.optim.base_learning_rate == 0.5 and reset.deterministic is False


def test_unset_flags_keep_the_recipe_values() -> None:
    recipe = cpu_budget_recipe()
    config = train_config("--recipe", "cpu-budget", "--epochs", "3", "--noise-sigma", "0", "0.1")
    assert config.epochs == 3
    assert config.views.noise_sigma == (0.0, 0.1)
    assert config == dataclasses.replace(
        recipe,
        data="x",
        out="y",
        epochs=3,
        time_budget=None,  # the length given by --epochs outranks the recipe's budget
        views=dataclasses.replace(recipe.views, noise_sigma=(0.0, 0.1)),
    )


def test_a_length_flag_outranks_the_recipe_budget_but_not_a_budget_flag() -> None:
    assert cpu_budget_recipe().time_budget == "10m"
    assert train_config("--recipe", "cpu-budget", "--max-steps", "5").time_budget is None
    assert train_config("--recipe", "cpu-budget").time_budget == "10m"
    both = train_config("--recipe", "cpu-budget", "--epochs", "2", "--time-budget", "1m")
    assert (both.epochs, both.time_budget) == (2, "1m")


def test_views_preset_then_view_flags_then_types() -> None:
    config = train_config("--recipe", "default", "--views", "cifar", "--hue", "0.1")
    assert config.views.input_size == 32 and config.views.hue == 0.1
    assert train_config("--devices", "4").devices == 4
    assert train_config("--devices", "auto").devices == "auto"
    assert train_config("--no-cache", "--compile").cache_images is False
    assert train_config("--temperature", "0.3").loss.temperature == 0.3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
        (["--noise-sigma", "0.1"], "argument --noise-sigma: expected 2 arguments"),
        (["--method", "byol"], "argument --method: invalid choice: 'byol'"),
        (["--lr", "-1"], "error: --lr -1.0: learning rate must be > 0"),
        (["--batch-size", "1"], "error: --batch-size 1: batch_size must be >= 2"),
        (["--max-images", "1"], "error: --max-images 1: max_images must be >= 2"),
        (["--noise-sigma", "0.2", "0.1"], "error: --noise-sigma 0.2 0.1: noise_sigma must be"),
        (["--val-train", "a"], "error: --val-train a: give both val_train and val_test"),
    ],
)
def test_bad_values_give_one_line_naming_the_flag(
    flags: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    arguments = ["train", "--data", "x", "--out", "y", "--recipe", "default", *flags]
    try:
        code = main(arguments)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1, error
    assert re.search(re.escape(message), error), error


def test_resume_keeps_the_saved_run_values_that_no_flag_overrides(tmp_path: Path) -> None:
    from contrastive.cli.train import _saved_config
    from contrastive.training.config import dump_config

    saved = cpu_budget_recipe(data="images", out=str(tmp_path))
    (tmp_path / "config.yaml").write_text(dump_config(saved))
    args = build_parser().parse_args(["train", "--resume", "--out", str(tmp_path), "--epochs", "5"])
    assert config_from_args(args, base=_saved_config(args)) == saved.with_overrides(epochs=5)


def test_the_time_budget_counts_from_the_start_of_the_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Building the parser imports torch and Lightning (seconds): the user waits for it, so
    # the budget must count it.
    import importlib
    import time

    import contrastive.cli as cli

    training = importlib.import_module("contrastive.training.train")  # the module, not train()

    marks: dict[str, float] = {}
    original = cli.build_parser

    def timed_build_parser(command: str | None = None) -> argparse.ArgumentParser:
        parser = original(command)
        marks["parser_built"] = time.perf_counter()
        return parser

    def fake_train(config: TrainConfig, budget_started: float, **kwargs: object) -> None:
        marks["budget_started"] = budget_started
        raise KeyboardInterrupt  # stop here: only the clock matters

    monkeypatch.setattr(cli, "build_parser", timed_build_parser)
    monkeypatch.setattr(training, "train", fake_train)
    called = time.perf_counter()
    flags = ["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--time-budget", "1m"]
    assert main(["train", *flags, "--recipe", "default"]) == 130
    assert called <= marks["budget_started"] < marks["parser_built"]


def test_resume_names_ignored_settings_by_the_cli_flags() -> None:
    # train.py names the flags itself (training does not import the CLI): the same names.
    from contrastive.training.resume import flag_name

    for flag in config_flags(TrainConfig, FLAGS, exclude=NO_FLAG):
        assert flag_name(flag.path) == flag.name, flag.path
    assert [flag_name(path) for path in NO_FLAG] == list(NO_FLAG)


def test_the_time_budget_is_read_before_any_work(caplog: pytest.LogCaptureFixture) -> None:
    from contrastive.errors import ContrastiveError

    # A typo fails here, before the folder scan (the data path "x" does not even exist).
    with pytest.raises(ContrastiveError, match="unknown time unit 'x' in '1x'"):
        train_config("--time-budget", "1x")
    with caplog.at_level("WARNING"):
        assert train_config("--time-budget", "10").time_budget == "10"
    assert "--time-budget 10 is read as 10 seconds" in caplog.text and "give 10m" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        train_config("--time-budget", "90")
        train_config("--time-budget", "10s")
    assert "read as" not in caplog.text  # a minute or more, or a unit: meant as given
    with caplog.at_level("WARNING"):
        train_config("--time-budget", "1m", "--max-steps", "10")
    assert "--max-steps is not used: --time-budget 1m plans the number of steps" in caplog.text
