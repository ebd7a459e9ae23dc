"""``Encoder.embed``: features of PIL images, files or arrays, equal to ``contrastive embed``'s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.embeddings import embed_folder
from contrastive.encoder import Encoder, feature_extractor
from contrastive.errors import ContrastiveError
from contrastive.views.config import ViewConfig


@pytest.fixture
def encoder() -> Encoder:
    torch.manual_seed(0)
    backbone, width = build_backbone(BackboneConfig("resnet18_quarter", small_image_stem=True))
    views = ViewConfig(
        input_size=24, eval_input_size=32, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25)
    )
    return Encoder(backbone.train(), width, views, BackboneConfig("resnet18_quarter"), "test")


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for index, size in enumerate([(48, 40), (32, 32), (70, 90)]):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        paths.append(folder / f"{index}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def test_embed_equals_the_folder_embedding_for_files_images_and_arrays(
    encoder: Encoder, photos: list[Path]
) -> None:
    folder = embed_folder(
        photos[0].parent, encoder.view_config, {"f": feature_extractor(encoder)}, progress=False
    )["f"]
    order = [list(folder.paths).index(path.name) for path in photos]
    expected = torch.as_tensor(folder.embeddings[order])
    images = [Image.open(path) for path in photos]
    arrays = [np.asarray(image) for image in images]
    for given in (photos, [str(path) for path in photos], images, arrays):
        features = encoder.embed(given, batch_size=2)
        assert features.shape == (3, encoder.feature_dim)
        torch.testing.assert_close(features, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(encoder.embed(images[1]), expected[1:2], atol=1e-4, rtol=1e-4)
    assert encoder.backbone.training  # its mode is given back


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (torch.rand(2, 3, 32, 32), "image 0 is a tensor: .* goes to encoder.backbone"),
        ([np.zeros((8, 8, 3), dtype=np.float32)], r"image 0: an array must be uint8 .* float32"),
        ([Image.new("RGB", (8, 8)), 3], "image 1 is a int"),
        ([], "at least one image"),
        (["/nope/missing.jpg"], "image 0: cannot read /nope/missing.jpg"),
    ],
)
def test_embed_refuses_what_it_cannot_read_in_one_line(
    encoder: Encoder, given: object, message: str
) -> None:
    with pytest.raises(ContrastiveError, match=message):
        encoder.embed(given)


class FixedSizeNetwork(torch.nn.Module):
    """Asserts its input size, as timm's ViT does (``Input height (32) doesn't match``)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.shape[-1] == 224, (
            f"Input height ({images.shape[-1]}) doesn't match model (224)"
        )
        return self.linear(images.mean(dim=(2, 3)))


def test_a_network_built_for_another_input_size_fails_in_one_line(
    encoder: Encoder, photos: list[Path]
) -> None:
    fixed = Encoder(FixedSizeNetwork(), 4, encoder.view_config, encoder.backbone_config, "vit.pt")
    with pytest.raises(
        ContrastiveError, match=r"vit.pt failed on 32x32 px images: Input height \(32\)"
    ):
        fixed.embed(photos)
    with pytest.raises(
        ContrastiveError, match="computing model features failed on 32x32 px.*--input-size"
    ):
        embed_folder(
            photos[0].parent, fixed.view_config, {"model": feature_extractor(fixed)}, progress=False
        )
