"""Batched views: sampled distributions, torchvision-equal operations, and the whole module."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from scipy import stats
from torchvision.utils import make_grid, save_image

from contrastive.data.cache import load_or_build_cache
from contrastive.data.folder import list_images, load_rgb
from contrastive.errors import ContrastiveError
from contrastive.views.batched import (
    BatchedViews,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    crop_resize_flip,
    gaussian_blur,
    grayscale,
    sample_bernoulli,
    sample_crop_boxes,
    sample_jitter_factors,
    sample_sigmas,
)
from contrastive.views.config import ViewConfig, view_preset
from contrastive.views.per_image import view_transform

SAMPLES = 20_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

#: Every augmentation off and no normalisation: a view is just the resized image.
PLAIN = dict(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    horizontal_flip_probability=0.0,
    color_jitter_probability=0.0,
    grayscale_probability=0.0,
    blur_probability=0.0,
    noise_probability=0.0,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _binomial_tolerance(probability: float, count: int) -> float:
    """Five standard deviations of an observed fraction: fails by chance ~1 in 10^6."""
    return 5 * math.sqrt(probability * (1 - probability) / count) + 1e-9


# --- sampling -----------------------------------------------------------------------------


def test_crop_scale_uniform_and_ratio_log_uniform() -> None:
    # Large image, scale range whose boxes always fit: no rejections, negligible rounding.
    side = 4000
    boxes = sample_crop_boxes(SAMPLES, side, side, (0.1, 0.5), (3 / 4, 4 / 3), _generator())
    top, left, height, width = boxes.double().unbind(dim=1)
    scale = (height * width / side**2).numpy()
    log_ratio = torch.log(width / height).numpy()
    assert stats.kstest(scale, stats.uniform(0.1, 0.4).cdf).pvalue > 1e-3
    low, high = math.log(3 / 4), math.log(4 / 3)
    assert stats.kstest(log_ratio, stats.uniform(low, high - low).cdf).pvalue > 1e-3
    # Positions are uniform over the free room.
    relative_top = (top / (side - height)).numpy()
    assert stats.kstest(relative_top, stats.uniform(0, 1).cdf).pvalue > 1e-3
    assert (left + width <= side).all() and (left >= 0).all()


def test_crop_boxes_match_torchvision_on_cifar_sized_images() -> None:
    # Small images reject some tries (w or h > 32) and round to pixels: compare to the source.
    torch.manual_seed(0)
    count = 5000
    reference = torch.tensor(
        [
            T.RandomResizedCrop.get_params(torch.empty(3, 32, 32), [0.08, 1.0], [3 / 4, 4 / 3])
            for _ in range(count)
        ]
    ).double()
    boxes = sample_crop_boxes(count, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), _generator()).double()
    for column, name in enumerate(["top", "left", "height", "width"]):
        result = stats.ks_2samp(boxes[:, column].numpy(), reference[:, column].numpy())
        assert result.pvalue > 1e-3, f"{name}: {result}"
    area = (boxes[:, 2] * boxes[:, 3]).numpy()
    reference_area = (reference[:, 2] * reference[:, 3]).numpy()
    assert stats.ks_2samp(area, reference_area).pvalue > 1e-3
    assert (boxes[:, 0] + boxes[:, 2] <= 32).all() and (boxes[:, 1] + boxes[:, 3] <= 32).all()
    assert (boxes[:, 2:] >= 1).all()


def test_crop_falls_back_to_a_central_box() -> None:
    # Width / height of 3..4 never fits a square image at 90 % of its area.
    boxes = sample_crop_boxes(50, 30, 30, (0.9, 1.0), (3.0, 4.0), _generator())
    assert (boxes == torch.tensor([10, 0, 10, 30])).all()
    tall = sample_crop_boxes(5, 40, 10, (0.99, 1.0), (1.0, 1.0), _generator())
    assert (tall == torch.tensor([15, 0, 10, 10])).all()


def test_jitter_factors_ranges_uniformity_and_probability() -> None:
    amounts = (0.4, 1.5, 0.4, 0.1)
    factors = sample_jitter_factors(SAMPLES, amounts, 0.8, _generator())
    applied = factors.applied
    assert abs(applied.float().mean().item() - 0.8) < _binomial_tolerance(0.8, SAMPLES)
    ranges = {
        "brightness": (0.6, 1.4),
        "contrast": (0.0, 2.5),
        "saturation": (0.6, 1.4),
        "hue": (-0.1, 0.1),
    }
    for name, (low, high) in ranges.items():
        values = getattr(factors, name)
        drawn = values[applied].numpy()
        assert drawn.min() >= low and drawn.max() <= high, name
        assert stats.kstest(drawn, stats.uniform(low, high - low).cdf).pvalue > 1e-3, name
        identity = 0.0 if name == "hue" else 1.0
        assert (values[~applied] == identity).all(), name


def test_sigmas_range_and_probability() -> None:
    sigmas = sample_sigmas(SAMPLES, (0.1, 2.0), 0.3, _generator())
    applied = sigmas > 0
    assert abs(applied.float().mean().item() - 0.3) < _binomial_tolerance(0.3, SAMPLES)
    drawn = sigmas[applied].numpy()
    assert stats.kstest(drawn, stats.uniform(0.1, 1.9).cdf).pvalue > 1e-3
    assert sample_bernoulli(100, 0.0).sum() == 0 and sample_bernoulli(100, 1.0).all()


# --- operations against torchvision --------------------------------------------------------


@pytest.mark.parametrize(("size", "out_size"), [(32, 32), (32, 48), (64, 24)])
def test_crop_resize_flip_equals_torchvision_resized_crop(size: int, out_size: int) -> None:
    generator = _generator(size + out_size)
    images = torch.randint(0, 256, (6, 3, size, size + 5), dtype=torch.uint8, generator=generator)
    boxes = sample_crop_boxes(12, size, size + 5, (0.08, 1.0), (3 / 4, 4 / 3), generator)
    flips = sample_bernoulli(12, 0.5, generator)
    views = crop_resize_flip(images, boxes, flips, out_size, pixel_scale=1 / 255)
    assert views.shape == (12, 3, out_size, out_size)
    for index in range(12):
        expected = TF.resized_crop(
            images[index % 6].float() / 255,
            *boxes[index].tolist(),
            [out_size, out_size],
            antialias=True,
        )
        if flips[index]:
            expected = expected.flip(-1)
        torch.testing.assert_close(views[index], expected, atol=1e-5, rtol=0)


def test_color_operations_equal_torchvision() -> None:
    generator = _generator(1)
    images = torch.rand(12, 3, 10, 12, generator=generator)
    images[0] = 0.5  # gray: hue undefined
    images[1, :2] = 0.7  # ties between channels
    factors = torch.rand(12, generator=generator) * 2
    shifts = torch.rand(12, generator=generator) - 0.5
    pairs = [
        (adjust_brightness, TF.adjust_brightness, factors),
        (adjust_contrast, TF.adjust_contrast, factors),
        (adjust_saturation, TF.adjust_saturation, factors),
        (adjust_hue, TF.adjust_hue, shifts),
    ]
    for batched, reference, values in pairs:
        expected = torch.stack(
            [reference(image, float(value)) for image, value in zip(images, values)]
        )
        torch.testing.assert_close(batched(images, values), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        grayscale(images).expand(-1, 3, -1, -1), TF.rgb_to_grayscale(images, num_output_channels=3)
    )


def test_brightness_multiplies_pixels() -> None:
    images = torch.full((2, 3, 4, 4), 0.25)
    result = adjust_brightness(images, torch.tensor([2.0, 5.0]))
    assert (result[0] == 0.5).all()
    assert (result[1] == 1.0).all(), "clipped at white"


def test_blur_equals_torchvision_and_sigma_zero_is_identity() -> None:
    generator = _generator(2)
    images = torch.rand(5, 3, 16, 20, generator=generator)
    sigmas = torch.tensor([0.3, 1.0, 2.0, 0.0, 1.5])
    blurred = gaussian_blur(images, sigmas, radius=6)
    for index, sigma in enumerate(sigmas.tolist()):
        if sigma == 0:
            assert torch.equal(blurred[index], images[index])
            continue
        expected = TF.gaussian_blur(images[index], [13, 13], [sigma, sigma])
        torch.testing.assert_close(blurred[index], expected, atol=1e-5, rtol=0)


# --- the module ----------------------------------------------------------------------------


def _uint8_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (count, 3, size, size), dtype=torch.uint8, generator=_generator(seed)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shapes_dtype_and_range(dtype: torch.dtype) -> None:
    config = view_preset("cifar", input_size=24, blur_probability=0.5, noise_probability=0.5)
    module = BatchedViews(config, num_views=3, dtype=dtype)
    images = torch.randint(0, 256, (7, 3, 40, 50), dtype=torch.uint8)
    views = module(images, _generator())
    assert len(views) == 3
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    for view in views:
        assert view.shape == (7, 3, 24, 24) and view.dtype == dtype
        pixels = view.float() * std + mean
        assert pixels.min() >= -0.02 and pixels.max() <= 1.02


@pytest.mark.parametrize(("size", "input_size"), [(32, 32), (32, 48), (64, 32)])
def test_all_augmentations_off_is_a_plain_resize(size: int, input_size: int) -> None:
    module = BatchedViews(ViewConfig(input_size=input_size, **PLAIN))
    images = _uint8_images(4, size)
    expected = TF.resize(images.float() / 255, [input_size, input_size], antialias=True)
    for view in module(images):
        torch.testing.assert_close(view, expected, atol=1e-5, rtol=0)


def test_flip_grayscale_and_jitter_probabilities() -> None:
    images = _uint8_images(4000, 8)
    plain = images.float() / 255
    count = 2 * len(images)
    # Random images are never symmetric, gray or jitter-invariant, so each effect is visible.
    flipped = BatchedViews(
        ViewConfig(input_size=8, **{**PLAIN, "horizontal_flip_probability": 0.3})
    )
    views = torch.cat(flipped(images, _generator(1)))
    mirrored = (views - plain.repeat(2, 1, 1, 1).flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert abs(mirrored.float().mean().item() - 0.3) < _binomial_tolerance(0.3, count)

    gray = BatchedViews(ViewConfig(input_size=8, **{**PLAIN, "grayscale_probability": 0.2}))
    views = torch.cat(gray(images, _generator(2)))
    is_gray = (views - views[:, :1]).abs().amax(dim=(1, 2, 3)) < 1e-6
    assert abs(is_gray.float().mean().item() - 0.2) < _binomial_tolerance(0.2, count)
    torch.testing.assert_close(views[is_gray][:, :1], grayscale(plain.repeat(2, 1, 1, 1))[is_gray])

    jitter = BatchedViews(
        ViewConfig(
            input_size=8,
            **{
                **PLAIN,
                "color_jitter_probability": 0.8,
                "brightness": 0.5,
                "contrast": 0.0,
                "saturation": 0.0,
                "hue": 0.0,
            },
        )
    )
    views = torch.cat(jitter(images, _generator(3)))
    changed = (views - plain.repeat(2, 1, 1, 1)).abs().amax(dim=(1, 2, 3)) > 1e-6
    assert abs(changed.float().mean().item() - 0.8) < _binomial_tolerance(0.8, count)


def test_noise_std_matches_sigma() -> None:
    config = ViewConfig(
        input_size=32, **{**PLAIN, "noise_probability": 1.0, "noise_sigma": (0.04, 0.04)}
    )
    images = torch.full((50, 3, 32, 32), 128, dtype=torch.uint8)  # mid-gray: no clipping
    noise = torch.cat(BatchedViews(config)(images, _generator())) - 128 / 255
    assert abs(noise.mean().item()) < 1e-3
    assert abs(noise.std().item() - 0.04) < 0.04 * 0.01
    black = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    assert torch.cat(BatchedViews(config)(black)).min() >= 0, "noise is clipped to [0, 1]"


def test_generator_makes_views_reproducible() -> None:
    module = BatchedViews(view_preset("cifar", blur_probability=0.5))
    images = _uint8_images(16, 32)
    first, second = module(images, _generator(7)), module(images, _generator(7))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first[0], module(images, _generator(8))[0])
    assert not torch.equal(first[0], first[1]), "the views of an image differ"


def test_bad_input_raises() -> None:
    module = BatchedViews(view_preset("cifar"))
    with pytest.raises(ContrastiveError, match=r"\(B, 3, H, W\)"):
        module(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ContrastiveError, match="num_views"):
        BatchedViews(view_preset("cifar"), num_views=0)
    with pytest.raises(ContrastiveError, match="dtype"):
        BatchedViews(view_preset("cifar"), dtype=torch.int32)


def test_matches_per_image_pipeline_on_real_photos(
    cifar10_small: dict[str, Path], tmp_path: Path
) -> None:
    """Same images through both pipelines: alike statistics, and a PNG grid to look at.

    Grid rows: originals, two per-image views, two batched views (denormalised).
    """
    config = view_preset(
        "cifar", blur_probability=0.5, blur_sigma=(0.1, 1.0), noise_probability=0.5
    )
    paths = list_images(cifar10_small["train"])[::2][:128]
    cache = load_or_build_cache(paths, 32, tmp_path, workers=0)
    images = torch.from_numpy(np.array(cache.images))
    torch.manual_seed(0)
    transform = view_transform(config)
    pil_images = [load_rgb(path) for path in paths]
    per_image = [torch.stack([transform(image) for image in pil_images]) for _ in range(2)]
    batched = BatchedViews(config)(images, _generator())

    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    per_image_pixels = torch.cat(per_image) * std + mean
    batched_pixels = torch.cat(batched) * std + mean
    for statistic in (torch.mean, torch.std):
        expected = statistic(per_image_pixels, dim=(0, 2, 3))
        torch.testing.assert_close(
            statistic(batched_pixels, dim=(0, 2, 3)), expected, atol=0.03, rtol=0
        )
    # Per-view contrast (std within a view) has the same spread across views.
    per_view_std = [p.std(dim=(1, 2, 3)) for p in (per_image_pixels, batched_pixels)]
    assert stats.ks_2samp(per_view_std[0].numpy(), per_view_std[1].numpy()).pvalue > 1e-3

    shown = torch.arange(0, len(paths), 11)  # spread over the classes
    rows = [
        images[shown].float() / 255,
        *(view[shown] * std + mean for view in per_image),
        *(view[shown] * std + mean for view in batched),
    ]
    grid = make_grid(torch.cat(rows).clamp(0, 1), nrow=len(shown), padding=2, pad_value=1.0)
    ARTIFACTS.mkdir(exist_ok=True)
    save_image(
        torch.nn.functional.interpolate(grid[None], scale_factor=3, mode="nearest"),
        ARTIFACTS / "views_grid.png",
    )
