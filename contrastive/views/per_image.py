"""Per-image views built from torchvision v2 and Lightly pieces (the reference pipeline).

This is the classic pipeline that runs in DataLoader workers, one PIL image at a time.
The batched pipeline in :mod:`contrastive.views.batched` samples from the same
:class:`~contrastive.views.config.ViewConfig` distributions, on the training device.
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from lightly.transforms import GaussianBlur
from PIL import Image

from contrastive.data.cache import resize_center_crop
from contrastive.views.config import ViewConfig


class RandomGaussianNoise(torch.nn.Module):
    """Adds Gaussian noise with a standard deviation drawn per image from a range.

    torchvision's ``v2.GaussianNoise`` takes one fixed sigma; this samples sigma uniformly
    from ``sigma_range`` for each call and then calls the same torchvision kernel.

    Args:
        sigma_range: ``(min, max)`` standard deviation on the 0..1 pixel scale.
        probability: Probability of adding noise at all.
    """

    def __init__(self, sigma_range: tuple[float, float], probability: float) -> None:
        super().__init__()
        self.sigma_range = sigma_range
        self.probability = probability

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Args: image: float tensor ``(C, H, W)`` in [0, 1]. Returns the same shape."""
        if torch.rand(()) >= self.probability:
            return image
        low, high = self.sigma_range
        sigma = float(low + (high - low) * torch.rand(()))
        return F.gaussian_noise(image, mean=0.0, sigma=sigma, clip=True)


def view_transform(config: ViewConfig) -> T.Compose:
    """The random view transform: PIL RGB image in, normalised float tensor out.

    Order as in SimCLR/Lightly: crop, flip, color jitter, grayscale, blur, then to tensor,
    noise (on the 0..1 scale) and normalisation.
    """
    brightness, contrast, saturation, hue = config.jitter_amounts
    return T.Compose(
        [
            T.RandomResizedCrop(
                config.input_size, scale=config.crop_scale, ratio=config.crop_ratio, antialias=True
            ),
            T.RandomHorizontalFlip(config.horizontal_flip_probability),
            T.RandomApply(
                [T.ColorJitter(brightness, contrast, saturation, hue)],
                p=config.color_jitter_probability,
            ),
            T.RandomGrayscale(config.grayscale_probability),
            GaussianBlur(prob=config.blur_probability, sigmas=config.blur_sigma),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            RandomGaussianNoise(config.noise_sigma, config.noise_probability),
            T.Normalize(list(config.mean), list(config.std)),
        ]
    )


def evaluation_resize(config: ViewConfig) -> int:
    """Short side an image is resized to before :func:`eval_transform`'s centre crop."""
    size = config.evaluation_size
    return size if size < 64 else int(round(size / 0.875))


class ResizeCenterCrop:
    """Picklable ``Resize(resize)`` then ``CenterCrop(crop)`` on PIL images.

    The same output as torchvision's pair, without resizing the whole of a thin image
    (a 1 x 50000 line at 224 px would need about 10 GB): see
    :func:`~contrastive.data.cache.resize_center_crop`.
    """

    def __init__(self, resize: int, crop: int) -> None:
        self.resize = resize
        self.crop = crop

    def __call__(self, image: Image.Image) -> Image.Image:
        return resize_center_crop(image, self.resize, self.crop)


def eval_resize_crop(config: ViewConfig) -> ResizeCenterCrop:
    """The PIL part of :func:`eval_transform`: resize + center crop, no tensor conversion."""
    return ResizeCenterCrop(evaluation_resize(config), config.evaluation_size)


def eval_transform(config: ViewConfig) -> T.Compose:
    """The deterministic evaluation transform: resize + center crop to the evaluation size.

    Images are resized so their shorter side is ``input_size / 0.875`` for inputs of 64 px
    and more (the ImageNet convention) and exactly ``input_size`` for small inputs, where
    cropping would throw away much of a CIFAR-sized image.
    """
    return T.Compose(
        [
            eval_resize_crop(config),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(list(config.mean), list(config.std)),
        ]
    )


class MultiView:
    """Applies a view transform ``num_views`` times to the same image.

    Returns a list of tensors, one per view; picklable for DataLoader workers.
    """

    def __init__(self, config: ViewConfig, num_views: int = 2) -> None:
        self.transform = view_transform(config)
        self.num_views = num_views

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        return [self.transform(image) for _ in range(self.num_views)]
