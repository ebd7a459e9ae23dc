"""End to end through the CLI on real photos: train, checkpoint, resume, embed, eval.

The photos are the ``cifar10_small`` folders: CIFAR-10 when its archives are there, else
crops of scikit-learn's sample photographs (see ``tests/conftest.py``).

This is the mission in miniature: a folder of real JPEGs in, a trained encoder, its
embeddings and a kNN report with baselines out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

pytestmark = pytest.mark.e2e

TINY = [
    "--views",
    "cifar",
    "--backbone",
    "resnet18",
    "--batch-size",
    "64",
    "--num-workers",
    "0",
    "--seed",
    "0",
]


def contrastive(*arguments: object, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the installed CLI in a fresh interpreter, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "contrastive", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def trained_run(cifar10_small: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("e2e") / "run"
    result = contrastive(
        "train",
        "--data",
        cifar10_small["train"],
        "--out",
        run,
        "--epochs",
        "2",
        "--checkpoint-every",
        "1",
        *TINY,
    )
    (run.parent / "train.stderr").write_text(result.stderr)
    return run


def test_the_console_shows_our_lines_not_lightnings(trained_run: Path) -> None:
    printed = (trained_run.parent / "train.stderr").read_text()
    assert "epoch 2/2 (step" in printed
    # Before: Lightning's banners and tip, and a "weights_only" line per checkpoint
    # (importing Lightning after the command line set its loggers' level reset them).
    for line in ("GPU available", "Tip:", "`weights_only` was not set"):
        assert line not in printed


def test_run_directory_holds_config_metrics_checkpoints_and_weights(trained_run: Path) -> None:
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["epochs"] == 2 and config["backbone"]["name"] == "resnet18"
    metrics = (trained_run / "metrics.csv").read_text().splitlines()
    assert metrics[0].split(",")[:1] == ["epoch"] and "loss" in metrics[0]
    checkpoints = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert checkpoints == ["epoch=000.ckpt", "epoch=001.ckpt", "last.ckpt"]


def test_backbone_weights_load_into_plain_torchvision(trained_run: Path) -> None:
    state_dict = torch.load(trained_run / "backbone.pt", weights_only=True)
    model = torchvision.models.resnet18()
    model.fc = torch.nn.Identity()
    model.load_state_dict(state_dict)  # strict: every key matches, nothing missing
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 512)


def test_resume_continues_from_last_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    before = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert before["epoch"] == 1
    contrastive("train", "--out", trained_run, "--resume", "--epochs", "3")
    after = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["epoch"] == 2
    assert after["global_step"] == before["global_step"] + before["global_step"] // 2
    # Optimizer momentum buffers were restored, not re-created empty.
    assert after["optimizer_states"][0]["state"], "optimizer state missing after resume"


def test_starting_over_an_existing_run_is_refused(
    trained_run: Path, cifar10_small: dict[str, Path]
) -> None:
    result = contrastive(
        "train", "--data", cifar10_small["train"], "--out", trained_run, *TINY, check=False
    )
    assert result.returncode == 2
    assert "already holds a run" in result.stderr and "Traceback" not in result.stderr


def test_embed_and_knn_report_with_baselines(
    trained_run: Path, cifar10_small: dict[str, Path], tmp_path: Path
) -> None:
    train_npz, test_npz = tmp_path / "train.npz", tmp_path / "test.npz"
    contrastive(
        "embed",
        "--run",
        trained_run,
        "--data",
        cifar10_small["train"],
        "--out",
        train_npz,
        "--no-progress",
    )
    contrastive(
        "embed",
        "--run",
        trained_run,
        "--data",
        cifar10_small["test"],
        "--out",
        test_npz,
        "--projector",
        tmp_path / "projector",
        "--no-progress",
    )
    assert (tmp_path / "projector" / "projector_config.pbtxt").is_file()
    exported = sorted(p.name for p in (tmp_path / "projector" / "00000" / "embeddings").iterdir())
    assert exported == ["metadata.tsv", "sprite.png", "tensors.tsv"]
    tensors = tmp_path / "projector" / "00000" / "embeddings" / "tensors.tsv"
    assert len(tensors.read_text().splitlines()) == 100
    report_path = tmp_path / "knn.json"
    contrastive(
        "eval",
        "knn",
        "--train",
        train_npz,
        "--test",
        test_npz,
        "--k",
        "20",
        "--baselines",
        "--out",
        report_path,
        "--no-progress",
    )
    report = json.loads(report_path.read_text())
    assert set(report["results"]) == {"model", "random_init", "raw_pixels"}
    assert report["data"]["train_count"] == 300 and report["data"]["test_count"] == 100
    for result in report["results"].values():
        assert 0.0 <= result["k=20"]["top1"] <= 1.0
