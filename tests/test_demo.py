"""The demo: `contrastive demo` end to end, and `quick_train` / `clear_run_dir` for notebooks."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

import contrastive.demo as demo
from contrastive.errors import ContrastiveError
from contrastive.losses import LossConfig
from contrastive.training.config import TrainConfig


def test_clear_run_dir_removes_only_runs(tmp_path: Path) -> None:
    assert demo.clear_run_dir(tmp_path / "absent") == tmp_path / "absent"
    (tmp_path / "empty").mkdir()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("data: x\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    for folder in ("empty", "run"):
        demo.clear_run_dir(tmp_path / folder)
        assert not (tmp_path / folder).exists()

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ContrastiveError, match="refusing to delete"):
        demo.clear_run_dir(precious)
    with pytest.raises(ContrastiveError, match="is a file"):
        demo.clear_run_dir(precious / "notes.txt")
    assert (precious / "notes.txt").read_text() == "keep me"


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[TrainConfig]:
    """Replaces training by recording the configs it was given."""
    configs: list[TrainConfig] = []

    def fake_train(config: TrainConfig) -> TrainConfig:
        assert not Path(config.out).exists(), "the earlier run should have been removed"
        configs.append(config)
        return config

    # demo imports train() when it runs (Lightning loads on first use): patched at its home.
    monkeypatch.setattr(importlib.import_module("contrastive.training.train"), "train", fake_train)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return configs


def blank_images(root: Path, count: int) -> Path:
    root.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (8, 8)).save(root / f"{index}.png")
    return root


def test_quick_train_budget_epochs_and_overrides(
    tmp_path: Path, trained: list[TrainConfig]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: x\n")  # an earlier run: replaced
    demo.quick_train(run, data=blank_images(tmp_path / "images", 200), time_budget="20s")
    demo.quick_train(run, epochs=2, loss=LossConfig("distance", distance="euclidean"))
    demo.quick_train(run, precision="bf16-mixed")
    small = blank_images(tmp_path / "small", 40)
    demo.quick_train(run, data=small)
    demo.quick_train(run, data=small, batch_size=20)
    budget, epochs, precision, halved, chosen = trained
    assert budget.batch_size == 64 and (halved.batch_size, chosen.batch_size) == (16, 20)
    assert budget.time_budget == "20s" and budget.data == str(tmp_path / "images")
    assert budget.out == str(run) and budget.precision == "32-true"  # fp32 on CPUs
    assert budget.backbone.name == "resnet18_quarter" and budget.backbone.small_image_stem
    assert epochs.time_budget is None and epochs.epochs == 2
    assert epochs.checkpoint_every_n_epochs == 2 and epochs.loss.distance == "euclidean"
    assert precision.precision == "bf16-mixed" and precision.time_budget == "30s"


#: Smallest accepted lead of trained over each baseline, in points of top-1: a regression
#: guard under the leads seeds 0-2 of this run gave (over raw pixels +9.5, +9.2, +7.8; over
#: random init +30 or more; benchmarks/README.md, "Demo"), kept low because the same recipe
#: lands differently on other CPUs (the earlier 32 px recipe: +6.4 with bf16 on AVX-512,
#: -3.6 in fp32 on AVX2).
MARGIN_POINTS = 2.0


def test_demo_command_trains_past_both_baselines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``contrastive demo`` exactly as the README runs it: trained beats both baselines."""
    from contrastive.cli import main

    # A private cache: the digits are rendered afresh (seconds) and the run lands here.
    monkeypatch.setenv("CONTRASTIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CONTRASTIVE_DEMO_EPOCHS", raising=False)
    assert main(["demo"]) == 0
    printed = capsys.readouterr().out
    top1 = {
        name: float(value)
        for name, value in re.findall(
            r"^\s+(raw pixels|random init|trained)\b.*?([\d.]+)%$", printed, re.MULTILINE
        )
    }
    assert set(top1) == {"raw pixels", "random init", "trained"}, printed
    assert top1["trained"] >= top1["random init"] + MARGIN_POINTS, printed
    assert top1["trained"] >= top1["raw pixels"] + MARGIN_POINTS, printed
    assert list((tmp_path / "cache" / "runs").glob("demo-*/config.yaml")), printed


def test_demo_epochs_variable_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from contrastive.cli.demo import epochs_from_environment

    monkeypatch.delenv("CONTRASTIVE_DEMO_EPOCHS", raising=False)
    assert epochs_from_environment() is None
    monkeypatch.setenv("CONTRASTIVE_DEMO_EPOCHS", "3")
    assert epochs_from_environment() == 3
    for bad in ("0", "-2", "ten"):
        monkeypatch.setenv("CONTRASTIVE_DEMO_EPOCHS", bad)
        with pytest.raises(ContrastiveError, match="CONTRASTIVE_DEMO_EPOCHS"):
            epochs_from_environment()
