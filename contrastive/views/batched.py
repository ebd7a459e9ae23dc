"""Batched views on the training device: the ViewConfig augmentations as tensor ops.

:class:`BatchedViews` turns a uint8 batch ``(B, 3, S, S)`` into ``num_views`` normalised
views with a handful of whole-batch tensor operations instead of a PIL pipeline per image.
It samples from the same :class:`~contrastive.views.config.ViewConfig` distributions as the
per-image reference pipeline (:func:`contrastive.views.per_image.view_transform`), with
torchvision's semantics, and these deliberate differences:

* Crop + resize + flip is one separable resample: per-sample interpolation matrices
  (bilinear, antialiased when shrinking, exactly torchvision's ``resized_crop`` of a float
  tensor) applied as two batched matrix products; the flip reverses the column matrix.
  This beat ``grid_sample`` and ``roi_align`` on CPU at 32 px and matches torchvision where
  ``grid_sample`` would alias when shrinking.
* Everything runs in float (``dtype``), never rounding to uint8 between operations.
* Color jitter applies its four operations in one random order per forward call (shared by
  the batch and its views), not a fresh order per image as torchvision does.
* Blur is a true Gaussian truncated at ``ceil(3 * max sigma)`` pixels with reflected
  borders (torchvision's ``gaussian_blur``), not the box-filter approximation of PIL that
  Lightly's ``GaussianBlur`` uses; it is also a pair of batched matrix products.

Samples that skip an augmentation get identity parameters (factor 1, sigma 0) rather than
being masked out, which keeps the batch free of data-dependent shapes and device syncs.
"""

from __future__ import annotations

import hashlib
import math
from typing import NamedTuple

import torch
from torch import nn

from contrastive.errors import ContrastiveError
from contrastive.views.config import ViewConfig

#: ITU-R 601-2 luma weights, as torchvision's ``rgb_to_grayscale``.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _uniform(
    shape: tuple[int, ...],
    low: float,
    high: float,
    generator: torch.Generator | None,
    device: torch.device | str | None,
) -> torch.Tensor:
    values = torch.rand(shape, generator=generator, device=device)
    return values.mul_(high - low).add_(low)


def sample_bernoulli(
    batch: int,
    probability: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Independent coin flips.

    Returns:
        bool tensor ``(batch,)``, True with ``probability``.
    """
    return torch.rand(batch, generator=generator, device=device) < probability


def _fallback_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's center-crop fallback: the largest box with a ratio inside the range."""
    image_ratio = width / height
    if image_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if image_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    tries: int = 10,
) -> torch.Tensor:
    """Crop boxes drawn like torchvision's ``RandomResizedCrop.get_params``, all at once.

    Each of ``tries`` attempts draws an area fraction uniformly from ``scale`` and an aspect
    ratio (width / height) log-uniformly from ``ratio``, rounds the box to whole pixels and
    keeps the first attempt that fits; its position is uniform. Samples with no fitting
    attempt get the central box with the ratio clamped into ``ratio``.

    Args:
        batch: Number of boxes ``B``.
        height: Image height ``H`` in pixels.
        width: Image width ``W`` in pixels.
        scale: ``(min, max)`` crop area as a fraction of ``H * W``.
        ratio: ``(min, max)`` aspect ratio.
        generator: Random source, on ``device``.
        device: Where the boxes are made.
        tries: Attempts per box before the fallback.

    Returns:
        int64 tensor ``(B, 4)``: ``top, left, box height, box width`` per row.
    """
    area = height * width
    target_area = _uniform((batch, tries), scale[0], scale[1], generator, device).mul_(area)
    aspect = _uniform(
        (batch, tries), math.log(ratio[0]), math.log(ratio[1]), generator, device
    ).exp_()
    widths = torch.round(torch.sqrt(target_area * aspect))
    heights = torch.round(torch.sqrt(target_area / aspect))
    fits = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    # argmax returns the first maximum, i.e. the first attempt that fits.
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    fallback_height, fallback_width = _fallback_crop_size(height, width, ratio)
    box_width = torch.where(found, widths.gather(1, first).squeeze(1), fallback_width)
    box_height = torch.where(found, heights.gather(1, first).squeeze(1), fallback_height)
    top = torch.rand(batch, generator=generator, device=device).mul_(height - box_height + 1)
    left = torch.rand(batch, generator=generator, device=device).mul_(width - box_width + 1)
    top = torch.minimum(top.floor_(), height - box_height)
    left = torch.minimum(left.floor_(), width - box_width)
    top = torch.where(found, top, (height - fallback_height) // 2)
    left = torch.where(found, left, (width - fallback_width) // 2)
    return torch.stack([top, left, box_height, box_width], dim=1).long()


class JitterFactors(NamedTuple):
    """Per-sample color jitter parameters, each a float tensor ``(B,)``.

    Samples with ``applied`` False hold the identity: factors 1 and hue shift 0.
    """

    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    applied: torch.Tensor


def sample_jitter_factors(
    batch: int,
    amounts: tuple[float, float, float, float],
    probability: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> JitterFactors:
    """Color jitter factors as torchvision's ``ColorJitter`` draws them, per sample.

    Brightness, contrast and saturation factors are uniform in ``[max(0, 1 - a), 1 + a]``,
    the hue shift uniform in ``[-h, h]``; the whole jitter is applied with ``probability``.

    Args:
        batch: Number of samples ``B``.
        amounts: ``(brightness, contrast, saturation, hue)``, e.g. ``config.jitter_amounts``.
        probability: Chance that a sample is jittered at all.
        generator: Random source, on ``device``.
        device: Where the factors are made.

    Returns:
        The factors; identity for samples not jittered.
    """
    applied = sample_bernoulli(batch, probability, generator, device)
    factors = [
        _uniform((batch,), max(0.0, 1.0 - amount), 1.0 + amount, generator, device)
        for amount in amounts[:3]
    ]
    hue = _uniform((batch,), -amounts[3], amounts[3], generator, device)
    factors = [torch.where(applied, factor, 1.0) for factor in factors]
    return JitterFactors(*factors, torch.where(applied, hue, 0.0), applied)


def sample_sigmas(
    batch: int,
    sigma_range: tuple[float, float],
    probability: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Per-sample standard deviations for blur or noise.

    Returns:
        float tensor ``(B,)``: uniform in ``sigma_range`` with ``probability``, else 0.
    """
    applied = sample_bernoulli(batch, probability, generator, device)
    sigmas = _uniform((batch,), sigma_range[0], sigma_range[1], generator, device)
    return torch.where(applied, sigmas, 0.0)


def resize_weights(
    starts: torch.Tensor, lengths: torch.Tensor, in_size: int, out_size: int, antialias: bool = True
) -> torch.Tensor:
    """Interpolation matrices that crop ``[start, start + length)`` and resize it.

    Bilinear (triangle) weights with torchvision's ``align_corners=False`` geometry. With
    ``antialias`` the triangle widens by the shrink factor, as ``interpolate(antialias=True)``
    does; only pixels inside the crop contribute, and weights are renormalised at its edges.

    Args:
        starts: float ``(B,)`` first pixel of each crop.
        lengths: float ``(B,)`` crop lengths in pixels.
        in_size: Image length along this axis.
        out_size: Output length.
        antialias: Widen the filter when shrinking.

    Returns:
        float32 ``(B, out_size, in_size)``; each row sums to 1.
    """
    device = starts.device
    starts = starts.float()[:, None, None]
    lengths = lengths.float()[:, None, None]
    step = lengths / out_size
    support = step.clamp(min=1.0) if antialias else torch.ones_like(step)
    centers = starts + (torch.arange(out_size, device=device) + 0.5)[None, :, None] * step
    pixel_centers = torch.arange(in_size, device=device) + 0.5
    weights = (1.0 - (pixel_centers - centers).abs() / support).clamp_(min=0.0)
    inside = (pixel_centers > starts) & (pixel_centers < starts + lengths)
    weights = weights * inside
    return weights / weights.sum(dim=-1, keepdim=True)


def crop_resize_flip(
    images: torch.Tensor,
    boxes: torch.Tensor,
    flips: torch.Tensor,
    out_size: int,
    dtype: torch.dtype = torch.float32,
    pixel_scale: float = 1.0,
    antialias: bool = True,
) -> torch.Tensor:
    """Resized crops of every image, ``num_views`` boxes per image, in one batched resample.

    Args:
        images: ``(B, 3, H, W)`` uint8 or float.
        boxes: int64 ``(V * B, 4)`` from :func:`sample_crop_boxes`; row ``v * B + b`` crops
            image ``b``.
        flips: bool ``(V * B,)``: mirror those crops left-right.
        out_size: Side of the square outputs.
        dtype: Computation and output dtype.
        pixel_scale: Multiplies the pixel values for free (``1 / 255`` for uint8 input).
        antialias: See :func:`resize_weights`.

    Returns:
        ``(V * B, 3, out_size, out_size)`` in ``dtype``.
    """
    batch, channels, height, width = images.shape
    views = boxes.shape[0] // batch
    top, left, box_height, box_width = boxes.unbind(dim=1)
    row_weights = resize_weights(top, box_height, height, out_size, antialias) * pixel_scale
    column_weights = resize_weights(left, box_width, width, out_size, antialias)
    column_weights = torch.where(flips[:, None, None], column_weights.flip(1), column_weights)
    column_weights = column_weights.to(dtype).transpose(1, 2).contiguous()
    # Plain contiguous bmm calls: broadcasting matmul takes much slower paths on CPU.
    # Columns first: the channels and rows of an image stack into one tall matrix.
    pixels = images.to(dtype).reshape(1, batch, channels * height, width)
    pixels = pixels.expand(views, -1, -1, -1).reshape(views * batch, channels * height, width)
    resampled = torch.bmm(pixels, column_weights)
    row_weights = row_weights.to(dtype).unsqueeze(1).expand(-1, channels, -1, -1)
    resampled = torch.bmm(
        row_weights.reshape(views * batch * channels, out_size, height),
        resampled.view(views * batch * channels, height, out_size),
    )
    return resampled.view(views * batch, channels, out_size, out_size)


def _per_sample(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return values.to(dtype).view(-1, 1, 1, 1)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma of ``(B, 3, H, W)`` images as ``(B, 1, H, W)``."""
    red, green, blue = images.unbind(dim=1)
    gray = red * GRAY_WEIGHTS[0] + green * GRAY_WEIGHTS[1] + blue * GRAY_WEIGHTS[2]
    return gray.unsqueeze(1)


def adjust_brightness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_brightness`` per sample: ``clamp(f * x, 0, 1)``.

    Args:
        images: ``(B, 3, H, W)`` in [0, 1].
        factors: ``(B,)``.
    """
    return (images * _per_sample(factors, images.dtype)).clamp_(0.0, 1.0)


def adjust_contrast(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_contrast`` per sample: blend with the image's mean luma."""
    factors = _per_sample(factors, images.dtype)
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return (images * factors + mean * (1.0 - factors)).clamp_(0.0, 1.0)


def adjust_saturation(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_saturation`` per sample: blend with the grayscale image."""
    factors = _per_sample(factors, images.dtype)
    return (images * factors + grayscale(images) * (1.0 - factors)).clamp_(0.0, 1.0)


def adjust_hue(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_hue`` per sample: rotate the HSV hue by ``shift`` turns.

    Goes through HSV without materialising it. With the hue ``h`` in sixths of a turn, the
    channel max ``v`` and the spread ``max - min`` (value times saturation), a channel
    whose pure hue is ``c`` (red 0, green 2, blue 4) is ``v - spread * clamp(d - 1, 0, 1)``,
    where ``d`` is the distance from ``h`` to ``c`` around the circle of length 6.

    Args:
        images: ``(B, 3, H, W)`` in [0, 1].
        shifts: ``(B,)`` in [-0.5, 0.5].
    """
    red, green, blue = images.unbind(dim=1)
    # Plane-wise ops: much faster on CPU than reductions or broadcasts over dim 1.
    high = torch.maximum(torch.maximum(red, green), blue)
    spread = high - torch.minimum(torch.minimum(red, green), blue)
    # Hue in sixths of a turn, times the spread; gray pixels give 0 / tiny = 0.
    hue = torch.where(
        high == red,
        green - blue,
        torch.where(
            high == green,
            (blue - red).add_(spread, alpha=2.0),
            (red - green).add_(spread, alpha=4.0),
        ),
    )
    hue.div_(spread.clamp(min=torch.finfo(images.dtype).tiny))
    hue.add_(6.0 * shifts.to(images.dtype).view(-1, 1, 1)).remainder_(6.0)
    channels = []
    for pure_hue in (0.0, 2.0, 4.0):
        distance = (hue - pure_hue).abs_()
        distance = torch.minimum(distance, 6.0 - distance)
        ramp = distance.sub_(1.0).clamp_(0.0, 1.0)
        channels.append(torch.addcmul(high, spread, ramp, value=-1.0))
    return torch.stack(channels, dim=1)


def blur_weights(sigmas: torch.Tensor, size: int, radius: int) -> torch.Tensor:
    """Matrices of a 1-D Gaussian blur with reflected borders, one per sample.

    Args:
        sigmas: ``(B,)`` standard deviations in pixels; 0 gives the identity.
        size: Signal length ``n``; needs ``radius < n``.
        radius: Kernel half-width.

    Returns:
        float32 ``(B, n, n)``; row ``i`` holds the weights of output pixel ``i``.
    """
    device = sigmas.device
    offsets = torch.arange(-radius, radius + 1, device=device)
    sigma = sigmas.float()[:, None]
    kernel = torch.exp(-(offsets**2) / (2.0 * torch.where(sigma > 0, sigma, 1.0) ** 2))
    kernel = torch.where(sigma > 0, kernel, (offsets == 0).float())
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    # torchvision's "reflect" padding: -1 -> 1, n -> n - 2.
    taps = (torch.arange(size, device=device)[:, None] + offsets[None, :]).abs()
    taps = torch.where(taps > size - 1, 2 * (size - 1) - taps, taps)
    batch = sigmas.shape[0]
    weights = torch.zeros(batch, size, size, device=device)
    return weights.scatter_add_(
        2, taps.expand(batch, -1, -1), kernel[:, None, :].expand(-1, size, -1)
    )


def gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma; sigma 0 leaves a sample unchanged.

    As torchvision's ``gaussian_blur`` with kernel size ``2 * radius + 1`` (reflected
    borders), done as two batched products with :func:`blur_weights` matrices.

    Args:
        images: ``(B, C, H, W)``.
        sigmas: ``(B,)`` standard deviations in pixels.
        radius: Kernel half-width; clipped below the image size.

    Returns:
        ``(B, C, H, W)``.
    """
    batch, channels, height, width = images.shape
    radius = min(radius, height - 1, width - 1)
    if radius < 1:
        return images
    columns = blur_weights(sigmas, width, radius).to(images.dtype).transpose(1, 2)
    rows = blur_weights(sigmas, height, radius).to(images.dtype)
    blurred = torch.bmm(images.reshape(batch, channels * height, width), columns.contiguous())
    rows = rows.unsqueeze(1).expand(-1, channels, -1, -1).reshape(batch * channels, height, height)
    blurred = torch.bmm(rows, blurred.view(batch * channels, height, width))
    return blurred.view(batch, channels, height, width)


def add_gaussian_noise(
    images: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """torchvision's ``gaussian_noise(clip=True)`` with a per-sample sigma ``(B,)``."""
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (images + noise * _per_sample(sigmas, images.dtype)).clamp_(0.0, 1.0)


def _host_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """A CPU generator following ``generator``, for draws the host needs (the jitter order).

    A device generator's state (seed and offset) lives on the host, so a CPU generator seeded
    from it is reproducible with ``generator`` and costs no device sync; it differs per call
    because the offset advances with every draw.
    """
    if generator is None or generator.device.type == "cpu":
        return generator
    state = generator.get_state().numpy().tobytes()
    seed = int.from_bytes(hashlib.blake2b(state, digest_size=8).digest(), "little")
    return torch.Generator().manual_seed(seed)


class BatchedViews(nn.Module):
    """Random views of a whole batch as tensor operations on the batch's device.

    Order as in the per-image pipeline: crop + resize + flip, color jitter (probability
    ``color_jitter_probability``), grayscale, blur, Gaussian noise (clipped to [0, 1]),
    normalisation. See the module docstring for where it departs from torchvision.

    Args:
        config: The view distributions.
        num_views: Views per image.
        dtype: Computation and output dtype (``torch.float32`` or ``torch.bfloat16``;
            bfloat16 keeps 8 significant bits, slightly coarser than uint8 near white).
        antialias: Antialias when a crop is shrunk (torchvision's default, True).
    """

    def __init__(
        self,
        config: ViewConfig,
        num_views: int = 2,
        dtype: torch.dtype = torch.float32,
        antialias: bool = True,
    ) -> None:
        super().__init__()
        if num_views < 1:
            raise ContrastiveError(f"num_views must be at least 1, got {num_views}")
        if not dtype.is_floating_point:
            raise ContrastiveError(f"BatchedViews dtype must be a float type, got {dtype}")
        self.config = config
        self.num_views = num_views
        self.dtype = dtype
        self.antialias = antialias
        self.blur_radius = math.ceil(3.0 * config.blur_sigma[1])
        std = torch.tensor(config.std).view(1, 3, 1, 1)
        mean = torch.tensor(config.mean).view(1, 3, 1, 1)
        # Normalisation as one multiply-add; not part of a checkpoint.
        self.register_buffer("scale", 1.0 / std, persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

    @torch.no_grad()
    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """Makes the views.

        Args:
            images: ``(B, 3, H, W)`` uint8 (0..255) or float (0..1), on any device.
            generator: Random source on the same device as ``images``; the color jitter
                order follows it too (without a device sync), so views are reproducible.

        Returns:
            ``num_views`` tensors ``(B, 3, input_size, input_size)`` in ``dtype`` on the
            device of ``images``, normalised.

        Raises:
            ContrastiveError: If ``images`` is not a ``(B, 3, H, W)`` batch.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ContrastiveError(
                f"BatchedViews expects images (B, 3, H, W), got {tuple(images.shape)}"
            )
        config, device = self.config, images.device
        batch, _, height, width = images.shape
        count = batch * self.num_views
        boxes = sample_crop_boxes(
            count, height, width, config.crop_scale, config.crop_ratio, generator, device
        )
        flips = sample_bernoulli(count, config.horizontal_flip_probability, generator, device)
        pixel_scale = 1.0 / 255.0 if images.dtype == torch.uint8 else 1.0
        views = crop_resize_flip(
            images, boxes, flips, config.input_size, self.dtype, pixel_scale, self.antialias
        )
        if config.color_jitter_probability > 0:
            factors = sample_jitter_factors(
                count, config.jitter_amounts, config.color_jitter_probability, generator, device
            )
            views = self._jitter(views, factors, generator)
        if config.grayscale_probability > 0:
            gray = sample_bernoulli(count, config.grayscale_probability, generator, device)
            views = torch.where(gray.view(-1, 1, 1, 1), grayscale(views), views)
        if config.blur_probability > 0:
            sigmas = sample_sigmas(
                count, config.blur_sigma, config.blur_probability, generator, device
            )
            views = gaussian_blur(views, sigmas, self.blur_radius)
        if config.noise_probability > 0:
            sigmas = sample_sigmas(
                count, config.noise_sigma, config.noise_probability, generator, device
            )
            views = add_gaussian_noise(views, sigmas, generator)
        views = views * self.scale.to(device, self.dtype) + self.shift.to(device, self.dtype)
        return list(views.chunk(self.num_views, dim=0))

    def _jitter(
        self, views: torch.Tensor, factors: JitterFactors, generator: torch.Generator | None
    ) -> torch.Tensor:
        brightness, contrast, saturation, hue = self.config.jitter_amounts
        operations = [
            (brightness, adjust_brightness, factors.brightness),
            (contrast, adjust_contrast, factors.contrast),
            (saturation, adjust_saturation, factors.saturation),
            (hue, adjust_hue, factors.hue),
        ]
        # A CPU permutation needs no device sync; one order per call (documented above).
        for index in torch.randperm(4, generator=_host_generator(generator)).tolist():
            amount, operation, values = operations[index]
            if amount > 0:
                views = operation(views, values)
        return views
