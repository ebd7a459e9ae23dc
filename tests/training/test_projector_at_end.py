"""The projector written at the end of training: decoded before training, read once."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.data.folder import ImageFolder
from contrastive.embeddings import extract_features, image_loader
from contrastive.encoder import EncoderFeatures
from contrastive.explore.images import load_thumbnail
from contrastive.training.projector_at_end import THUMBNAIL_SIZE, ProjectorAtEnd
from contrastive.views.config import ViewConfig

pytest.importorskip("tensorboard")


def fake_run(tmp_path: Path) -> tuple[SimpleNamespace, SimpleNamespace]:
    from pytorch_lightning.loggers import TensorBoardLogger

    trainer = SimpleNamespace(
        is_global_zero=True,
        loggers=[TensorBoardLogger(str(tmp_path), name="tensorboard", version="")],
    )
    backbone, _ = build_backbone(BackboneConfig("resnet10_quarter", small_image_stem=True))
    module = SimpleNamespace(method=SimpleNamespace(backbone=backbone), device=torch.device("cpu"))
    return trainer, module


def test_the_end_of_training_embeds_the_sample_decoded_before_it(
    tiny_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = ViewConfig(input_size=24, eval_input_size=32)
    folder = ImageFolder.scan(tiny_images)
    callback = ProjectorAtEnd(tiny_images, folder.paths, views, sample_size=10, seed=3)
    trainer, module = fake_run(tmp_path)
    callback.setup(trainer, module, "fit")  # type: ignore[arg-type]
    assert callback.sample is not None and len(callback.sample) == 10

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image file was read after training")

    monkeypatch.setattr(Image, "open", no_reading)
    callback.on_train_end(trainer, module)  # type: ignore[arg-type]
    monkeypatch.undo()

    written = tmp_path / "tensorboard" / "00000" / "embeddings"
    features = np.loadtxt(written / "tensors.tsv", delimiter="\t")
    # The same features `contrastive embed` computes for these images with these weights.
    sample = ImageFolder(tiny_images, callback.sample.paths)
    expected, _ = extract_features(
        image_loader(sample, views, reduced_decode=True),
        {"backbone": EncoderFeatures(module.method.backbone)},
        progress=False,
    )
    np.testing.assert_allclose(features, expected["backbone"], rtol=1e-4, atol=1e-5)
    # The sprite holds the thumbnails `embed --projector` cuts, in point order.
    sprite = np.asarray(Image.open(written / "sprite.png"))
    side = THUMBNAIL_SIZE
    np.testing.assert_array_equal(
        sprite[:side, side : 2 * side], load_thumbnail(callback.sample.paths[1], side)
    )
    metadata = (written / "metadata.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[1] for line in metadata] == sample.relative_paths()


def test_an_unreadable_sample_image_is_left_out(tiny_images: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    shutil.copytree(tiny_images, images)
    broken = next((images / "a").iterdir())
    broken.write_bytes(b"not an image")
    folder = ImageFolder.scan(images)
    callback = ProjectorAtEnd(images, folder.paths, ViewConfig(input_size=32), sample_size=100)
    trainer, _module = fake_run(tmp_path)
    callback.setup(trainer, _module, "fit")  # type: ignore[arg-type]
    assert callback.sample is not None
    assert len(callback.sample) == len(folder) - 1 and broken not in callback.sample.paths


def test_nothing_is_decoded_without_tensorboard_or_off_rank_zero(
    tiny_images: Path, tmp_path: Path
) -> None:
    folder = ImageFolder.scan(tiny_images)
    callback = ProjectorAtEnd(tiny_images, folder.paths, ViewConfig(input_size=32))
    trainer, module = fake_run(tmp_path)
    for run in (
        SimpleNamespace(is_global_zero=True, loggers=[]),
        SimpleNamespace(is_global_zero=False, loggers=trainer.loggers),
    ):
        callback.setup(run, module, "fit")  # type: ignore[arg-type]
        assert callback.sample is None


def test_a_failing_projector_warns_and_leaves_the_run_alone(
    tiny_images: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = ImageFolder.scan(tiny_images)
    callback = ProjectorAtEnd(tiny_images, folder.paths, ViewConfig(input_size=32), sample_size=4)
    trainer, module = fake_run(tmp_path)
    callback.setup(trainer, module, "fit")  # type: ignore[arg-type]

    def failing_backbone(images: torch.Tensor) -> torch.Tensor:
        raise TypeError("Multiple dispatch failed\nmore lines")

    module.method.backbone = failing_backbone
    with caplog.at_level("WARNING"):
        callback.on_train_end(trainer, module)  # type: ignore[arg-type]
    assert callback.written is None
    message = caplog.records[-1].getMessage()
    assert "projector was not written (TypeError: Multiple dispatch failed)" in message
    assert f"--run {tmp_path} --data {tiny_images}" in message
    assert not (tmp_path / "tensorboard" / "00000").exists()
