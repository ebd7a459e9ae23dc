"""The per-image pipeline: shapes, normalisation, determinism, noise, multiple views."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
from PIL import Image

from contrastive.views.config import IMAGENET_MEAN, IMAGENET_STD, ViewConfig, view_preset
from contrastive.views.per_image import (
    MultiView,
    RandomGaussianNoise,
    eval_transform,
    evaluation_resize,
    view_transform,
)

# Every random augmentation switched off: a view is the resized image, normalised.
NO_AUGMENTATION = {
    "crop_scale": (1.0, 1.0),
    "crop_ratio": (1.0, 1.0),
    "horizontal_flip_probability": 0.0,
    "color_jitter_probability": 0.0,
    "grayscale_probability": 0.0,
    "blur_probability": 0.0,
    "noise_probability": 0.0,
}


def random_image(width: int = 50, height: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def constant_image(rgb: tuple[int, int, int], size: int = 40) -> Image.Image:
    return Image.new("RGB", (size, size), rgb)


@pytest.mark.parametrize("size", [32, 48])
@pytest.mark.parametrize("preset", ["simclr", "cifar"])
def test_view_is_a_normalised_float_tensor(preset: str, size: int) -> None:
    torch.manual_seed(0)
    config = view_preset(preset, input_size=size)
    view = view_transform(config)(random_image())
    assert view.shape == (3, size, size)
    assert view.dtype == torch.float32
    # Undoing the ImageNet normalisation gives pixels in [0, 1].
    pixels = (
        view * torch.tensor(IMAGENET_STD)[:, None, None]
        + torch.tensor(IMAGENET_MEAN)[:, None, None]
    )
    assert pixels.min() >= -1e-5
    assert pixels.max() <= 1 + 1e-5


def test_view_uses_the_configured_normalisation() -> None:
    config = ViewConfig(
        input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0), **NO_AUGMENTATION
    )
    view = view_transform(config)(constant_image((51, 102, 204)))
    # (51, 102, 204) / 255 = (0.2, 0.4, 0.8); minus 0.5, over (0.25, 0.5, 1.0)
    # = (-1.2, -0.2, 0.3)
    expected = torch.tensor([-1.2, -0.2, 0.3])[:, None, None].expand(3, 32, 32)
    torch.testing.assert_close(view, expected, rtol=0, atol=1e-5)


def test_eval_transform_is_deterministic_and_shaped() -> None:
    image = random_image(70, 45)
    transform = eval_transform(view_preset("simclr", input_size=64))
    first, second = transform(image), transform(image)
    assert first.shape == (3, 64, 64)
    assert torch.equal(first, second)


def test_eval_transform_uses_the_evaluation_size() -> None:
    # Trained on 24 px crops, evaluated on whole 32 px images.
    config = view_preset("cifar", input_size=24, eval_input_size=32)
    assert (config.input_size, config.evaluation_size) == (24, 32)
    assert eval_transform(config)(random_image(32, 32)).shape == (3, 32, 32)
    assert view_transform(config)(random_image(32, 32)).shape == (3, 24, 24)
    assert view_preset("cifar", input_size=24).evaluation_size == 24


def test_eval_transform_keeps_a_small_image_of_the_input_size_as_is() -> None:
    # Below 64 px the shorter side is resized to exactly input_size: a 32 px image is only
    # converted and normalised.
    config = ViewConfig(input_size=32, mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7))
    image = random_image(32, 32, seed=1)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    expected = (pixels - torch.tensor([0.1, 0.2, 0.3])[:, None, None]) / torch.tensor(
        [0.5, 0.6, 0.7]
    )[:, None, None]
    torch.testing.assert_close(eval_transform(config)(image), expected)


def test_eval_transform_resizes_large_inputs_by_one_over_0875() -> None:
    # 64 px: shorter side to round(64 / 0.875) = 73, then a centred 64 px crop, rows and
    # columns 4..67 (offset round(9 / 2) = 4). A 73 px image with a 4 px frame is not
    # resized and loses its frame; resized to 64 (or cropped off-centre) it would keep some.
    config = ViewConfig(input_size=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    array = np.full((73, 73, 3), 200, dtype=np.uint8)
    array[:4] = array[-4:] = array[:, :4] = array[:, -4:] = 0  # a 4 px black frame
    view = eval_transform(config)(Image.fromarray(array))
    assert view.shape == (3, 64, 64)
    torch.testing.assert_close(view, torch.full((3, 64, 64), 200 / 255))


def test_gaussian_noise_has_the_configured_std() -> None:
    torch.manual_seed(0)
    grey = torch.full((3, 64, 64), 0.5)  # far from 0 and 1: clipping does not shrink the std
    difference = RandomGaussianNoise((0.1, 0.1), probability=1.0)(grey) - grey
    # 12288 samples: the standard error of the std is 0.1 / sqrt(2 * 12288) = 0.0006.
    assert difference.std().item() == pytest.approx(0.1, abs=0.003)
    assert difference.mean().item() == pytest.approx(0.0, abs=0.003)


def test_gaussian_noise_sigma_is_drawn_from_the_range() -> None:
    torch.manual_seed(0)
    grey = torch.full((3, 32, 32), 0.5)
    noise = RandomGaussianNoise((0.02, 0.2), probability=1.0)
    stds = [(noise(grey) - grey).std().item() for _ in range(30)]
    assert 0.015 < min(stds) < max(stds) < 0.21
    assert max(stds) - min(stds) > 0.08  # spread over the range, not one fixed sigma


def test_gaussian_noise_with_probability_zero_changes_nothing() -> None:
    image = torch.rand(3, 16, 16)
    noise = RandomGaussianNoise((0.1, 0.1), probability=0.0)
    for _ in range(20):
        assert torch.equal(noise(image), image)


def test_gaussian_noise_probability_is_respected() -> None:
    torch.manual_seed(0)
    image = torch.full((3, 8, 8), 0.5)
    noise = RandomGaussianNoise((0.1, 0.1), probability=0.3)
    changed = sum(not torch.equal(noise(image), image) for _ in range(400))
    # Binomial(400, 0.3): mean 120, std 9.2
    assert 90 < changed < 150


def test_noise_in_the_view_is_on_the_pixel_scale() -> None:
    # Noise comes before normalisation: after undoing std = 0.5 it has std 0.1 again.
    torch.manual_seed(0)
    config = ViewConfig(
        input_size=64,
        mean=(0.0, 0.0, 0.0),
        std=(0.5, 0.5, 0.5),
        **{**NO_AUGMENTATION, "noise_probability": 1.0, "noise_sigma": (0.1, 0.1)},
    )
    view = view_transform(config)(constant_image((128, 128, 128), size=64))
    pixels = view * 0.5
    assert (pixels - 128 / 255).std().item() == pytest.approx(0.1, abs=0.003)


def test_multiview_returns_different_views() -> None:
    torch.manual_seed(0)
    views = MultiView(view_preset("cifar"))(random_image())
    assert len(views) == 2
    assert all(view.shape == (3, 32, 32) for view in views)
    assert not torch.equal(views[0], views[1])


def test_multiview_count_and_pickling() -> None:
    multiview = pickle.loads(pickle.dumps(MultiView(view_preset("cifar"), num_views=3)))
    assert len(multiview(random_image())) == 3


def test_multiview_without_augmentation_gives_equal_views() -> None:
    # The two views differ only through the random augmentations.
    views = MultiView(ViewConfig(input_size=32, **NO_AUGMENTATION))(random_image())
    assert torch.equal(views[0], views[1])


@pytest.mark.parametrize("size", [(500, 300), (20000, 3)])
def test_eval_transform_is_torchvisions_resize_and_crop(size: tuple[int, int]) -> None:
    # A thin image (20000 x 3) is resampled only where the crop keeps it: same picture,
    # within PIL's single-precision box (a grey level), without the 224 x 1.5 million
    # intermediate torchvision would build.
    config = ViewConfig(input_size=224)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    reference = T.Compose(
        [
            T.Resize(evaluation_resize(config), antialias=True),
            T.CenterCrop(config.evaluation_size),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(list(config.mean), list(config.std)),
        ]
    )(image)
    ours = eval_transform(config)(image)
    assert ours.shape == reference.shape == (3, config.evaluation_size, config.evaluation_size)
    tolerance = 0.0 if size[0] < 4 * size[1] else 2.5 / 255 / min(config.std)
    assert (ours - reference).abs().max() <= tolerance + 1e-6
    assert pickle.loads(pickle.dumps(eval_transform(config)))(image).shape == ours.shape
