"""Named training recipes: :class:`TrainConfig` templates for common settings.

* :func:`cpu_budget_recipe`: the best setting found for short wall-clock budgets on a few
  CPU cores with 32 px images (CIFAR-10, 10 minutes on 2 Zen4 cores; see
  ``benchmarks/README.md``). Meant as the default for ``--time-budget`` runs on CPU.
* :func:`lightly_cifar10_protocol`: Lightly's published CIFAR-10 benchmark setting
  (ResNet-18 with CIFAR stem, batch 512, 200 epochs, SimCLR), for a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from contrastive.backbone_config import (
    TIMM_PREFIX,
    BackboneConfig,
    is_builtin_backbone,
    is_torchvision_resnet,
)
from contrastive.losses import LossConfig
from contrastive.methods.config import MethodConfig
from contrastive.training.config import (
    OptimConfig,
    TrainConfig,
    leaf_settings,
    nested_settings,
)
from contrastive.views.config import view_preset

log = logging.getLogger(__name__)


def cpu_budget_recipe(
    data: str = "", out: str = "runs/cpu-budget", time_budget: str | None = "10m"
) -> TrainConfig:
    """SimCLR for minutes of training on a few CPU cores: small, fast steps, many of them.

    CIFAR-10, 10 minutes on 2 Zen4 cores, final weights: kNN top-1 61.7% (k=200), linear
    63.6%, ~3,700 steps of 128 images (``benchmarks/README.md``).

    Chosen by 3-minute sweeps on CIFAR-10 (2 Zen4 cores, kNN k=200 on final weights; each
    line is the gain of one change, measured in the same session; ``benchmarks/README.md``):

    * Backbone ``resnet18_quarter`` (quarter-width ResNet-18, 128-d features) with the
      small-image stem (3x3 stride-1 conv, no max-pool): in a few minutes more steps beat
      more capacity (half width with the same stem: -7 points at 3 min).
    * Views of 24 px, cropped from images stored at 32 px, and evaluation on whole images
      at 32 px: about 1.6x the steps of 32 px views (+2.7 points). A model trained on
      zoomed-in crops sees objects larger than a whole image shows them, so whole images
      are best shown a little larger (FixRes, Touvron et al., 2019): the same weights score
      2.4 points more at 32 px than at 24 px.
    * Batch 128 (+2.1 points over 256 at the same time; twice the updates) and NT-Xent at
      temperature 0.1 (+1 point over 0.2; sharper than SimCLR's 0.5).
    * Crops of 20-100% of the image (``mocov2``-like scale) rather than 8-100%: with only
      a few epochs, very small crops are mostly noise.
    * Base learning rate 0.3 per 256 images (0.6 was not better), 5% warm-up, cosine to 0
      over the steps the budget fits (re-planned during the run, see ``FillTimeBudget``).
    * bf16 autocast where native, channels-last, batched on-device views from the decoded
      cache: the data path costs almost nothing next to the step.
    """
    return TrainConfig(
        data=data,
        out=out,
        views=view_preset("cifar", input_size=24, eval_input_size=32, crop_scale=(0.2, 1.0)),
        stored_size=32,
        backbone=BackboneConfig("resnet18_quarter", small_image_stem=True),
        method=MethodConfig("simclr"),
        loss=LossConfig("ntxent", temperature=0.1),
        optim=OptimConfig(base_learning_rate=0.3, weight_decay=5e-4, warmup_fraction=0.05),
        batch_size=128,
        num_workers=0,
        precision="auto",
        view_pipeline="batched",
        channels_last=True,
        time_budget=time_budget,
        checkpoint_every_n_epochs=None,
        monitor_every_n_epochs=1000,
    )


def lightly_cifar10_protocol(
    data: str = "", out: str = "runs/lightly-cifar10", epochs: int = 200
) -> TrainConfig:
    """Lightly's CIFAR-10 benchmark setting (``cifar10_benchmark.py``), for one GPU.

    ResNet-18 with the CIFAR stem (3x3 conv, no max-pool), SimCLR + NT-Xent (T=0.5),
    ``SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)``, batch 512,
    SGD lr 0.06 x batch/128 (base 0.12 per 256), momentum 0.9, weight decay 5e-4, cosine,
    200 epochs. Lightly reports kNN top-1 0.848 (k=200, T=0.1, best epoch) on an RTX A6000.
    """
    return TrainConfig(
        data=data,
        out=out,
        views=view_preset("cifar"),
        backbone=BackboneConfig("resnet18", small_image_stem=True),
        method=MethodConfig("simclr"),
        loss=LossConfig("ntxent", temperature=0.5),
        optim=OptimConfig(base_learning_rate=0.12, warmup_fraction=0.0),
        batch_size=512,
        epochs=epochs,
        precision="auto",
        checkpoint_every_n_epochs=10,
    )


#: Base configurations for ``contrastive train --recipe NAME`` (flags override them).
RECIPES: dict[str, Callable[[], TrainConfig]] = {
    "default": TrainConfig,
    "cpu-budget": cpu_budget_recipe,
    "lightly-cifar10": lightly_cifar10_protocol,
}


def choose_recipe(name: str, time_budget: str | None) -> str:
    """Resolves ``auto``: for a ``--time-budget`` run, the CPU-budget recipe as the base that
    the recipe planner (:mod:`contrastive.planning`) fills in for the folder and hardware.

    Raises:
        ValueError: For a name that is neither ``auto`` nor in :data:`RECIPES`.
    """
    if name == "auto":
        return "cpu-budget" if time_budget is not None else "default"
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from auto, {', '.join(RECIPES)}")
    return name


def settings_for_recipe(
    values: Mapping[str, Any], recipe: TrainConfig | None = None
) -> dict[str, Any]:
    """Settings given (by dotted path) as they apply to a recipe: a view size given drops the
    recipe's evaluation and stored sizes (they belong to its own view size), a backbone that
    is not a ResNet drops its stem (:func:`without_recipe_stem`), and another method than
    ``recipe``'s drops its temperature (cpu-budget's 0.1 is SimCLR's: MoCo with the distance
    loss collapsed at 0.1 and trained at its own 0.2), unless one was given."""
    values = dict(values)
    if "views.input_size" in values:
        values.setdefault("views.eval_input_size", None)
        values.setdefault("stored_size", None)
    method = values.get("method.name")
    if (
        recipe is not None
        and method is not None
        and method != recipe.method.name
        and recipe.loss.temperature is not None
        and "loss.temperature" not in values
    ):
        log.info(
            "--method %s: the temperature %g belongs to the recipe's %s; %s trains at its "
            "usual temperature (--temperature sets one)",
            method,
            recipe.loss.temperature,
            recipe.method.name,
            method,
        )
        values["loss.temperature"] = None
    return without_recipe_stem(values)


def with_settings(recipe: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    """``recipe`` with the settings given (by dotted path), as ``contrastive train`` applies
    its flags to a recipe (:func:`settings_for_recipe`)."""
    merged = leaf_settings(recipe.to_dict()) | settings_for_recipe(values, recipe)
    return TrainConfig.from_dict(nested_settings(merged))


def without_recipe_stem(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flag values (by dotted path) that leave out a recipe's stem where ``--backbone`` names
    a network that is not a torchvision ResNet.

    A recipe's small-image stem (cpu-budget's, the base of ``--time-budget`` runs) belongs to
    its own ResNet, as its view sizes belong to its own view size: ``--backbone
    convnext_tiny`` must not inherit it. A stem the user gave (``--small-image-stem``) is
    kept, so that :class:`BackboneConfig` still refuses it for such a network.

    Args:
        values: The flags given, by dotted path (``backbone.name``...).

    Returns:
        ``values``, with ``backbone.small_image_stem`` False and ``backbone.stem_stride`` 1
        where the backbone named is not a ResNet and those were not given.
    """
    name = values.get("backbone.name")
    # An unknown name is left for BackboneConfig, whose error then names the flag.
    known = isinstance(name, str) and (name.startswith(TIMM_PREFIX) or is_builtin_backbone(name))
    if not known or is_torchvision_resnet(name):
        return dict(values)
    return {"backbone.small_image_stem": False, "backbone.stem_stride": 1, **values}
