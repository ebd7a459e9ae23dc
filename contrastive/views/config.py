"""The view configuration: what augmentations make the two views of an image.

One dataclass describes the distributions; both the per-image pipeline
(:mod:`contrastive.views.per_image`) and the batched pipeline
(:mod:`contrastive.views.batched`) sample from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from contrastive.errors import ContrastiveError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ViewConfig:
    """Distributions of the augmentations that produce one view.

    Attributes:
        input_size: Side of the square view, in pixels.
        crop_scale: Range of the crop area as a fraction of the image area.
        crop_ratio: Range of the crop aspect ratio (width / height), sampled log-uniformly.
        horizontal_flip_probability: Probability of a left-right flip.
        color_jitter_probability: Probability that color jitter is applied at all.
        color_jitter_strength: Multiplies the four jitter amounts below (0.5 for CIFAR).
        brightness: Brightness jitter: factor drawn from ``[1 - b*s, 1 + b*s]``.
        contrast: Contrast jitter, likewise.
        saturation: Saturation jitter, likewise.
        hue: Hue jitter: shift drawn from ``[-h*s, h*s]`` (fraction of the hue circle).
        grayscale_probability: Probability of converting the view to grayscale.
        blur_probability: Probability of a Gaussian blur.
        blur_sigma: Range of the blur's standard deviation, in pixels of the view.
        noise_probability: Probability of additive Gaussian noise.
        noise_sigma: Range of the noise's standard deviation, on the 0..1 pixel scale.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.
        eval_input_size: Side of the (uncropped) images the trained encoder is evaluated
            and used on; None: ``input_size``. Random-resized crops show objects larger
            than a whole image does, so a model trained on small crops can do better on
            whole images at a larger size ("FixRes", Touvron et al., 2019).
    """

    input_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    horizontal_flip_probability: float = 0.5
    color_jitter_probability: float = 0.8
    color_jitter_strength: float = 1.0
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    grayscale_probability: float = 0.2
    blur_probability: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise_probability: float = 0.0
    noise_sigma: tuple[float, float] = (0.01, 0.05)
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)
    eval_input_size: int | None = None

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ContrastiveError(f"input_size must be at least 8 pixels, got {self.input_size}")
        if self.eval_input_size is not None and self.eval_input_size < 8:
            raise ContrastiveError(
                f"eval_input_size must be at least 8 pixels, got {self.eval_input_size}"
            )
        _check_range("crop_scale", self.crop_scale, 0.0, 1.0, low_open=True)
        _check_range("crop_ratio", self.crop_ratio, 0.0, float("inf"), low_open=True)
        _check_range("blur_sigma", self.blur_sigma, 0.0, float("inf"))
        _check_range("noise_sigma", self.noise_sigma, 0.0, float("inf"))
        for name in (
            "horizontal_flip_probability",
            "color_jitter_probability",
            "grayscale_probability",
            "blur_probability",
            "noise_probability",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ContrastiveError(f"{name} must be in [0, 1], got {value}")
        for name in ("color_jitter_strength", "brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ContrastiveError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hue * self.color_jitter_strength <= 0.5:
            raise ContrastiveError("hue * color_jitter_strength must be in [0, 0.5]")
        if len(self.mean) != 3 or len(self.std) != 3 or not min(self.std) > 0:
            raise ContrastiveError("mean and std need three values, std > 0")
        if not all(math.isfinite(value) for value in (*self.mean, *self.std)):
            # NaN passes every comparison below, and then every feature is NaN.
            raise ContrastiveError(
                f"mean {tuple(self.mean)} and std {tuple(self.std)} must be finite numbers"
            )
        if max(*self.mean, *self.std) > 1 or min(self.mean) < 0:
            # Images reach the normalisation as 0-1 tensors; 0-255 values collapse features.
            raise ContrastiveError(
                f"mean {tuple(self.mean)} and std {tuple(self.std)} must be on the 0-1 scale "
                "of the image tensors (divide 0-255 values by 255)"
            )

    def evaluation_description(self) -> str:
        """The evaluation size and normalisation, as recorded beside embeddings: features
        of the same weights under other preprocessing are not comparable."""
        mean = ", ".join(f"{value:.4g}" for value in self.mean)
        std = ", ".join(f"{value:.4g}" for value in self.std)
        return f"{self.evaluation_size} px, mean ({mean}), std ({std})"

    @property
    def evaluation_size(self) -> int:
        """Side of the images at evaluation and embedding time."""
        return self.eval_input_size or self.input_size

    @property
    def jitter_amounts(self) -> tuple[float, float, float, float]:
        """Brightness, contrast, saturation and hue amounts after applying the strength."""
        s = self.color_jitter_strength
        return self.brightness * s, self.contrast * s, self.saturation * s, self.hue * s

    def to_dict(self) -> dict:
        """A JSON/YAML-friendly dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> ViewConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise a clear error."""
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ContrastiveError(f"unknown view option(s): {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _check_range(
    name: str, value: tuple[float, float], low: float, high: float, low_open: bool = False
) -> None:
    if len(value) != 2 or value[0] > value[1]:
        raise ContrastiveError(f"{name} must be a (min, max) pair with min <= max, got {value}")
    too_low = value[0] <= low if low_open else value[0] < low
    if too_low or value[1] > high:
        raise ContrastiveError(f"{name} must lie in ({low}, {high}], got {value}")


#: Presets. ``simclr`` and ``mocov2`` are Lightly's SimCLRTransform / MoCoV2Transform
#: defaults; ``cifar`` is Lightly's CIFAR-10 benchmark setting
#: (``SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)``).
VIEW_PRESETS: dict[str, ViewConfig] = {
    "simclr": ViewConfig(),
    "mocov2": ViewConfig(
        crop_scale=(0.2, 1.0),
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.1,
    ),
    "cifar": ViewConfig(
        input_size=32,
        color_jitter_strength=0.5,
        blur_probability=0.0,
    ),
}


def view_preset(name: str, **overrides: object) -> ViewConfig:
    """Returns a preset, optionally with some fields replaced.

    Raises:
        ContrastiveError: If ``name`` is not a preset.
    """
    if name not in VIEW_PRESETS:
        raise ContrastiveError(
            f"unknown view preset {name!r}; choose one of {', '.join(VIEW_PRESETS)}"
        )
    return replace(VIEW_PRESETS[name], **overrides)
