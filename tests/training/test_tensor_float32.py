"""TF32 on CUDA runs only: decided from the accelerator, set for the run, then put back."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator, CUDAAccelerator

from contrastive.backbone_config import BackboneConfig
from contrastive.training.config import TrainConfig
from contrastive.training.module import ContrastiveModule
from contrastive.training.tensor_float32 import TensorFloat32, float32_matmul_precision


@pytest.fixture(autouse=True)
def default_precision() -> Iterator[None]:
    """Every test starts from PyTorch's default and leaves it behind."""
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision("highest")


@pytest.mark.parametrize(
    ("accelerator", "expected"),
    [
        ("cuda", "high"),
        ("gpu", "high"),
        ("CUDA", "high"),
        ("cpu", None),
        ("mps", None),
        ("auto", None),  # unresolved: the callback asks the trainer's accelerator
        (CUDAAccelerator(), "high"),
        (CPUAccelerator(), None),
    ],
)
def test_precision_follows_the_accelerator(accelerator: object, expected: str | None) -> None:
    assert float32_matmul_precision(accelerator) == expected


def fake_trainer(accelerator: object) -> SimpleNamespace:
    return SimpleNamespace(accelerator=accelerator)


def test_cuda_run_gets_tf32_and_gives_it_back() -> None:
    callback, trainer = TensorFloat32(), fake_trainer(CUDAAccelerator())

    callback.setup(trainer, None, "fit")  # type: ignore[arg-type]
    during = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
    callback.teardown(trainer, None, "fit")  # type: ignore[arg-type]

    assert during == ("high", True)
    assert torch.get_float32_matmul_precision() == "highest"
    assert not torch.backends.cuda.matmul.allow_tf32


def test_a_chosen_precision_is_kept() -> None:
    torch.set_float32_matmul_precision("medium")
    callback, trainer = TensorFloat32(), fake_trainer(CUDAAccelerator())

    callback.setup(trainer, None, "fit")  # type: ignore[arg-type]
    assert torch.get_float32_matmul_precision() == "medium"
    callback.teardown(trainer, None, "fit")  # type: ignore[arg-type]
    assert torch.get_float32_matmul_precision() == "medium"


class Recording(pl.LightningModule):
    """One linear layer; records the matmul precision seen in its training steps."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.seen: list[str] = []

    def configure_callbacks(self) -> list[pl.Callback]:
        return [TensorFloat32()]

    def training_step(self, batch: list[torch.Tensor], batch_index: int) -> torch.Tensor:
        self.seen.append(torch.get_float32_matmul_precision())
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4
        )


def test_cpu_training_keeps_full_fp32(tmp_path: object) -> None:
    module = Recording()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )

    trainer.fit(module)

    assert module.seen == ["highest", "highest"]
    assert torch.backends.mkldnn.matmul.fp32_precision in ("none", "ieee")


def test_training_module_brings_the_callback() -> None:
    config = TrainConfig(backbone=BackboneConfig("resnet18_quarter"))

    callbacks = ContrastiveModule(config.to_dict()).configure_callbacks()

    assert any(isinstance(callback, TensorFloat32) for callback in callbacks)
