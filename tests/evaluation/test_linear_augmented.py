"""Lightly's augmented linear protocol: transform, frozen features, a learnable problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from contrastive.backbones import BackboneConfig, build_backbone
from contrastive.data.folder import ImageFolder
from contrastive.embeddings import RawPixels
from contrastive.encoder import EncoderFeatures
from contrastive.evaluation.linear_augmented import (
    AugmentedLinearSettings,
    augmented_train_transform,
    feature_width,
    train_augmented_linear,
)
from contrastive.views.config import ViewConfig

VIEWS = ViewConfig(input_size=16)


def test_transform_crops_to_input_size_and_normalises() -> None:
    image = Image.new("RGB", (40, 30), (255, 255, 255))
    view = augmented_train_transform(VIEWS)(image)
    assert view.shape == (3, 16, 16)
    expected = (1 - torch.tensor(VIEWS.mean)) / torch.tensor(VIEWS.std)
    assert torch.allclose(view[:, 0, 0], expected, atol=1e-5)


def test_learns_colour_classes_from_raw_pixels(colour_folders: dict[str, Path]) -> None:
    settings = AugmentedLinearSettings(epochs=8, batch_size=6, base_learning_rate=20.0)
    pixels = RawPixels()
    result = train_augmented_linear(
        pixels,
        feature_width(pixels, 16),
        VIEWS,
        ImageFolder.scan(colour_folders["train"]),
        ImageFolder.scan(colour_folders["test"]),
        settings,
        progress=False,
    )
    assert result["top1"] == 1.0
    assert result["confusion_matrix"] == [[3, 0, 0], [0, 3, 0], [0, 0, 3]]
    assert result["settings"]["epochs"] == 8


def test_backbone_stays_frozen(colour_folders: dict[str, Path]) -> None:
    backbone, width = build_backbone(BackboneConfig("resnet18_quarter"))
    backbone.train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    result = train_augmented_linear(
        EncoderFeatures(backbone),
        width,
        VIEWS,
        ImageFolder.scan(colour_folders["train"]),
        ImageFolder.scan(colour_folders["test"]),
        AugmentedLinearSettings(epochs=1, batch_size=8),
        progress=False,
    )
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert backbone.training
    assert result["final_train_loss"] == pytest.approx(result["final_train_loss"])  # not NaN
