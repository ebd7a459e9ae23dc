"""Augmentation preview: views of real images, un-normalised, repeatable, RNG-neutral."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastive.errors import ContrastiveError
from contrastive.explore import Embeddings, plot_augmentations, sample_views, save_figure
from contrastive.explore.images import denormalise, read_image
from contrastive.views.config import ViewConfig, view_preset

# Every random step switched off: a view is the image itself, normalised.
IDENTITY = ViewConfig(
    input_size=32,
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    horizontal_flip_probability=0.0,
    color_jitter_probability=0.0,
    grayscale_probability=0.0,
    blur_probability=0.0,
)


def test_identity_views_undo_the_normalisation(cifar_set: Embeddings) -> None:
    image = read_image(cifar_set.image_path(0))
    views = sample_views(image, IDENTITY, num_views=2)
    original = np.asarray(image, dtype=np.float32) / 255
    assert views.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(views[0], original, atol=1e-5)


def test_denormalise_inverts_normalise() -> None:
    pixels = torch.rand(3, 4, 5)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    normalised = (pixels - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    np.testing.assert_allclose(
        denormalise(normalised, mean, std), pixels.permute(1, 2, 0).numpy(), atol=1e-6
    )


def test_views_repeat_with_the_seed_and_leave_global_rng_alone(cifar_set: Embeddings) -> None:
    image = read_image(cifar_set.image_path(3))
    config = view_preset("cifar")
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first = sample_views(image, config, num_views=4, seed=11)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    np.testing.assert_array_equal(first, sample_views(image, config, num_views=4, seed=11))
    assert not np.array_equal(first, sample_views(image, config, num_views=4, seed=12))
    assert not np.array_equal(first[0], first[1])
    assert first.min() >= 0.0 and first.max() <= 1.0


def test_preview_grid_has_original_then_views(cifar_set: Embeddings, artifacts: Path) -> None:
    paths = [cifar_set.image_path(i) for i in (0, 25, 47, 81)]
    config = view_preset("cifar", input_size=64)
    figure = plot_augmentations(paths, config, num_views=5)
    save_figure(figure, artifacts / "augmentations.png")
    image_axes = [ax for ax in figure.axes if ax.images]
    assert len(image_axes) == 4 * 6
    assert [ax.get_title() for ax in image_axes[:6]] == ["original"] + [
        f"view {i}" for i in range(1, 6)
    ]
    assert all(ax.images[0].get_array().shape == (64, 64, 3) for ax in image_axes)
    first_row_views = sample_views(read_image(paths[0]), config, 5, seed=0)
    np.testing.assert_array_equal(image_axes[1].images[0].get_array(), first_row_views[0])


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ContrastiveError, match="no images"):
        plot_augmentations([], IDENTITY)
    with pytest.raises(ContrastiveError, match="num_views"):
        plot_augmentations([tmp_path / "x.jpg"], IDENTITY, num_views=0)
    with pytest.raises(ContrastiveError, match="cannot read image"):
        plot_augmentations([tmp_path / "x.jpg"], IDENTITY)
