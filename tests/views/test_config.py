"""ViewConfig: validation, presets equal to Lightly's transforms, dict round trip."""

from __future__ import annotations

import inspect
import json

import pytest
import torchvision.transforms.v2 as T
from lightly.transforms import MoCoV2Transform, SimCLRTransform

from contrastive.errors import ContrastiveError
from contrastive.views.config import VIEW_PRESETS, ViewConfig, view_preset


def lightly_view_fields(transform: type, **arguments: object) -> dict[str, object]:
    """What a Lightly transform does with ``arguments`` (others at their defaults), in
    ViewConfig's field names."""
    values = {
        name: parameter.default
        for name, parameter in inspect.signature(transform).parameters.items()
    }
    values.update(arguments)
    # Lightly has no vertical flip or rotation in ViewConfig; they must be off by default.
    assert values["vf_prob"] == 0.0
    assert values["rr_prob"] == 0.0
    crop_ratio = inspect.signature(T.RandomResizedCrop).parameters["ratio"].default
    return {
        "input_size": values["input_size"],
        "crop_scale": (values["min_scale"], 1.0),
        "crop_ratio": tuple(crop_ratio),  # Lightly leaves RandomResizedCrop's ratio alone
        "horizontal_flip_probability": values["hf_prob"],
        "color_jitter_probability": values["cj_prob"],
        "color_jitter_strength": values["cj_strength"],
        "brightness": values["cj_bright"],
        "contrast": values["cj_contrast"],
        "saturation": values["cj_sat"],
        "hue": values["cj_hue"],
        "grayscale_probability": values["random_gray_scale"],
        "blur_probability": values["gaussian_blur"],
        "blur_sigma": tuple(values["sigmas"]),
        "noise_probability": 0.0,  # Lightly adds no noise
        "mean": tuple(values["normalize"]["mean"]),
        "std": tuple(values["normalize"]["std"]),
    }


@pytest.mark.parametrize(
    ("preset", "transform", "arguments"),
    [
        ("simclr", SimCLRTransform, {}),
        ("mocov2", MoCoV2Transform, {}),
        ("cifar", SimCLRTransform, {"input_size": 32, "cj_strength": 0.5, "gaussian_blur": 0.0}),
    ],
)
def test_presets_equal_lightly_transforms(
    preset: str, transform: type, arguments: dict[str, object]
) -> None:
    config = VIEW_PRESETS[preset]
    for name, expected in lightly_view_fields(transform, **arguments).items():
        assert getattr(config, name) == pytest.approx(expected), name


def test_every_field_is_compared_with_lightly() -> None:
    # Ours only: the noise range and the evaluation size (Lightly has no evaluation views).
    assert set(lightly_view_fields(SimCLRTransform)) | {"noise_sigma", "eval_input_size"} == set(
        ViewConfig.__dataclass_fields__
    )


def test_jitter_amounts_apply_the_strength() -> None:
    # cifar: strength 0.5 x (0.8, 0.8, 0.8, 0.2) = (0.4, 0.4, 0.4, 0.1)
    assert VIEW_PRESETS["cifar"].jitter_amounts == pytest.approx((0.4, 0.4, 0.4, 0.1))


def test_view_preset_overrides_and_unknown_name() -> None:
    config = view_preset("cifar", noise_probability=0.5)
    assert config.noise_probability == 0.5
    assert config.input_size == 32
    assert VIEW_PRESETS["cifar"].noise_probability == 0.0  # the preset itself is untouched
    with pytest.raises(ContrastiveError, match="imagenet"):
        view_preset("imagenet")


@pytest.mark.parametrize(
    "config",
    [
        *VIEW_PRESETS.values(),
        ViewConfig(
            input_size=48,
            crop_scale=(0.3, 0.9),
            noise_probability=0.4,
            noise_sigma=(0.0, 0.2),
            mean=(0.5, 0.5, 0.5),
            std=(0.2, 0.3, 0.4),
        ),
    ],
)
def test_dict_round_trip(config: ViewConfig) -> None:
    values = config.to_dict()
    assert isinstance(values["crop_scale"], list)  # JSON/YAML friendly
    assert ViewConfig.from_dict(json.loads(json.dumps(values))) == config


def test_from_dict_names_unknown_keys() -> None:
    with pytest.raises(ContrastiveError, match="crop_size"):
        ViewConfig.from_dict({"input_size": 32, "crop_size": 28})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input_size", 4),
        ("eval_input_size", 4),
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.5, 0.2)),
        ("crop_scale", (0.2, 1.5)),
        ("crop_scale", (0.2,)),
        ("crop_ratio", (0.0, 1.0)),
        ("crop_ratio", (2.0, 0.5)),
        ("blur_sigma", (-0.1, 1.0)),
        ("noise_sigma", (0.2, 0.1)),
        ("horizontal_flip_probability", 1.5),
        ("color_jitter_probability", -0.1),
        ("grayscale_probability", 2.0),
        ("blur_probability", -1.0),
        ("noise_probability", 1.01),
        ("color_jitter_strength", -1.0),
        ("brightness", -0.1),
        ("contrast", -0.1),
        ("saturation", -0.1),
        ("hue", 0.6),
        ("mean", (0.5, 0.5)),
        ("std", (0.2, 0.0, 0.2)),
    ],
)
def test_invalid_values_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ContrastiveError, match=field):
        ViewConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input_size", 8),
        ("eval_input_size", 8),
        ("crop_scale", (1.0, 1.0)),
        ("horizontal_flip_probability", 0.0),
        ("grayscale_probability", 1.0),
        ("hue", 0.5),
        ("blur_sigma", (0.0, 0.0)),
    ],
)
def test_boundary_values_are_accepted(field: str, value: object) -> None:
    assert getattr(ViewConfig(**{field: value}), field) == value
