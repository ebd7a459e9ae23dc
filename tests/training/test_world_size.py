"""The batch-size check counts the processes Lightning will start, for every ``--devices`` form."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contrastive.errors import ContrastiveError
from contrastive.training.config import TrainConfig
from contrastive.training.train import expected_world_size, train


@pytest.fixture
def four_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning counts GPUs with ``torch.cuda.device_count`` (NVML): pretend there are 4."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


@pytest.mark.parametrize(
    ("accelerator", "devices", "num_nodes", "expected"),
    [
        ("cpu", 1, 1, 1),
        ("cpu", 2, 1, 2),
        ("cpu", "2", 1, 2),
        ("cpu", "auto", 1, 1),  # Lightning: one CPU process
        ("cpu", 3, 2, 6),
        ("cuda", "auto", 1, 4),
        ("cuda", -1, 1, 4),
        ("cuda", "-1", 1, 4),
        ("cuda", "0,1", 1, 2),
        ("cuda", [1, 3], 1, 2),
        ("gpu", 2, 2, 4),
        ("auto", "auto", 1, 4),
        ("auto", "0,2,3", 2, 6),
    ],
)
def test_world_size_follows_lightning_parsing(
    four_gpus: None, accelerator: str, devices: int | str, num_nodes: int, expected: int
) -> None:
    config = TrainConfig(accelerator=accelerator, devices=devices, num_nodes=num_nodes)

    assert expected_world_size(config) == expected
    assert not torch.cuda.is_initialized()


@pytest.mark.parametrize(("accelerator", "devices"), [("auto", "auto"), ("gpu", 2), ("cuda", 9)])
def test_flags_lightning_rejects_count_one_process(
    monkeypatch: pytest.MonkeyPatch, accelerator: str, devices: int | str
) -> None:
    # No GPU ("gpu" and "cuda:9" are the Trainer's errors to report); "auto" falls to the CPU.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)

    assert expected_world_size(TrainConfig(accelerator=accelerator, devices=devices)) == 1


def test_batch_check_uses_the_devices_auto_count(
    four_gpus: None, tiny_images: Path, tmp_path: Path
) -> None:
    # 32 images, 4 GPUs: a batch of 16 per process needs 64 images; refused before any build.
    config = TrainConfig(
        data=str(tiny_images),
        out=str(tmp_path / "run"),
        batch_size=16,
        accelerator="cuda",
        devices="auto",
    )

    with pytest.raises(ContrastiveError, match=r"batch size 16 x 4 processes is larger"):
        train(config)
