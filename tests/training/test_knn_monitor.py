"""The online kNN monitor: same number as an offline kNN, logged during fit, state untouched."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch import nn

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.embeddings import embed_folder
from contrastive.encoder import EncoderFeatures
from contrastive.evaluation.knn import knn_classify
from contrastive.training.knn_monitor import METRIC_NAME, KNNMonitor
from contrastive.views.config import ViewConfig

VIEWS = ViewConfig(input_size=16)


def write_folder(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for index, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = np.array([80 * index, 200 - 60 * index, 120])
            pixels = np.clip(base + rng.integers(-60, 61, (18, 18, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def backbone() -> nn.Module:
    torch.manual_seed(0)
    model, _ = build_backbone(BackboneConfig("resnet18_quarter"))
    return model


def offline_top1(model: nn.Module, train: Path, test: Path, k: int) -> float:
    extractor = {"f": EncoderFeatures(model)}
    bank = embed_folder(train, VIEWS, extractor, progress=False)["f"]
    queries = embed_folder(test, VIEWS, extractor, progress=False)["f"]
    ranking = knn_classify(
        torch.from_numpy(bank.embeddings),
        torch.from_numpy(bank.labels),
        torch.from_numpy(queries.embeddings),
        k=k,
    )
    return (ranking[:, 0].numpy() == queries.labels).mean()


def test_measure_equals_offline_knn_and_keeps_state(tmp_path: Path) -> None:
    train, test = write_folder(tmp_path / "t", 8, 0), write_folder(tmp_path / "v", 4, 1)
    model = backbone().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cached = KNNMonitor(train, test, VIEWS, k=5)
    streamed = KNNMonitor(train, test, VIEWS, k=5, cache_bytes=0)
    first, second = cached.measure(model), cached.measure(model)
    assert first == second == streamed.measure(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training
    assert first == offline_top1(model.eval(), train, test, k=5)


def test_a_diverged_backbone_reads_nan_instead_of_stopping_the_run(tmp_path: Path) -> None:
    train, test = write_folder(tmp_path / "t", 8, 0), write_folder(tmp_path / "v", 4, 1)
    model = backbone()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    assert math.isnan(KNNMonitor(train, test, VIEWS, k=5).measure(model))


class TinyModule(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = backbone()

    def training_step(self, batch: list[torch.Tensor], batch_index: int) -> torch.Tensor:
        return self.backbone(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.randn(4, 3, 16, 16)), batch_size=4
        )


def test_logs_the_online_monitor_during_fit(tmp_path: Path) -> None:
    train, test = write_folder(tmp_path / "t", 4, 0), write_folder(tmp_path / "v", 2, 1)
    monitor = KNNMonitor(train, test, VIEWS, every_n_epochs=2, k=3)
    module = TinyModule()
    logger = pl.loggers.CSVLogger(tmp_path / "logs", name="", version="")
    trainer = pl.Trainer(
        max_epochs=2,
        logger=logger,
        enable_checkpointing=False,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor],
        accelerator="cpu",
    )
    trainer.fit(module)
    logged = trainer.callback_metrics[METRIC_NAME].item()
    assert 0.0 <= logged <= 1.0
    assert logged == monitor.measure(module.backbone)
    assert module.backbone.training
    assert METRIC_NAME in (tmp_path / "logs" / "metrics.csv").read_text().splitlines()[0]


def test_the_epoch_line_shows_this_epoch_s_knn(
    tiny_config, tiny_images: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import csv
    import logging
    import re

    from contrastive.training.train import train

    config = tiny_config.with_overrides(
        epochs=3, val_train=str(tiny_images), val_test=str(tiny_images), monitor_every_n_epochs=1
    )
    with caplog.at_level(logging.INFO):
        train(config)
    line = r"epoch (\d)/3 \(step \d+\): .*?monitor/knn_top1 ([\d.]+)"
    shown = {int(m.group(1)): float(m.group(2)) for m in re.finditer(line, caplog.text)}
    with open(config.run_dir / "metrics.csv", newline="") as file:
        logged = [float(row[METRIC_NAME]) for row in csv.DictReader(file) if row[METRIC_NAME]]
    assert len(logged) == 3 and 1 in shown
    # Each value is shown beside the epoch that measured it (before: the epoch after).
    for epoch, value in shown.items():
        assert value == pytest.approx(logged[epoch - 1], abs=1e-4), (epoch, shown, logged)
