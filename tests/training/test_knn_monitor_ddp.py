"""The online kNN monitor under DDP (two CPU processes, gloo): rank 0 measures, all log it.

Lightning forks the two ranks from the test process (``ddp_fork``: no re-import of torch);
each rank writes what it saw to a file, since the forked ranks' objects do not come back.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.training.knn_monitor import METRIC_NAME, KNNMonitor
from contrastive.views.config import ViewConfig

VIEWS = ViewConfig(input_size=16)

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="ranks are forked (POSIX)"
)


def write_folder(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for index, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = np.array([80 * index, 200 - 60 * index, 120])
            pixels = np.clip(base + rng.integers(-60, 61, (18, 18, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


class CountingMonitor(KNNMonitor):
    """Appends ``rank`` to ``record`` whenever this process measures."""

    def __init__(self, record: Path, *args: object, fail: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.record, self.fail = record, fail

    def measure(self, backbone: torch.nn.Module, device: torch.device | str = "cpu") -> float:
        with self.record.open("a") as record:
            record.write(f"{torch.distributed.get_rank()}\n")
        if self.fail:
            raise RuntimeError("measurement broke")
        return super().measure(backbone, device)


class TinyModule(pl.LightningModule):
    """A backbone trained on a squared-feature loss; each rank writes its logged monitor."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone, _ = build_backbone(BackboneConfig("resnet18_quarter"))
        self.out = out

    def training_step(self, batch: list[torch.Tensor], batch_index: int) -> torch.Tensor:
        return self.backbone(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.randn(8, 3, 16, 16)), batch_size=2
        )

    def on_train_end(self) -> None:
        logged = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
        (self.out / f"rank{self.global_rank}.json").write_text(json.dumps(logged))


def fit_two_ranks(tmp_path: Path, monitor: KNNMonitor) -> None:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_fork",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor],
    )
    trainer.fit(TinyModule(tmp_path))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    return write_folder(tmp_path / "bank", 4, 0), write_folder(tmp_path / "queries", 2, 1)


def test_rank_zero_measures_and_every_rank_logs_its_number(
    one_thread: None, folders: tuple[Path, Path], tmp_path: Path
) -> None:
    record = tmp_path / "measured.txt"
    fit_two_ranks(tmp_path, CountingMonitor(record, *folders, VIEWS, k=3))

    # Two monitored epochs, each measured once, by rank 0.
    assert record.read_text().split() == ["0", "0"]
    logged = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert 0.0 <= logged[0][METRIC_NAME] <= 1.0
    assert logged[0][METRIC_NAME] == logged[1][METRIC_NAME]


def test_a_failure_on_rank_zero_stops_both_ranks(
    one_thread: None, folders: tuple[Path, Path], tmp_path: Path
) -> None:
    record = tmp_path / "measured.txt"
    monitor = CountingMonitor(record, *folders, VIEWS, k=3, fail=True)

    # Both ranks stop (no hang in the broadcast): rank 0 with its error, rank 1 with a
    # ContrastiveError quoting it; whichever the launcher meets first comes back here.
    with pytest.raises(Exception, match=r"(RuntimeError: )?measurement broke") as raised:
        fit_two_ranks(tmp_path, monitor)
    assert record.read_text().split() == ["0"]
    # Rank 1's ContrastiveError names rank 0; rank 0's own error arrives as the RuntimeError
    # itself or wrapped by the process launcher (its traceback text).
    text = str(raised.value)
    assert "the online kNN monitor failed in process 0" in text or (
        "RuntimeError: measurement broke" in text or isinstance(raised.value, RuntimeError)
    )
