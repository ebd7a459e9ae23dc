"""Named training recipes: :class:`TrainConfig` templates for common settings.

* :func:`cpu_budget_recipe`: the best setting found for short wall-clock budgets on a few
  CPU cores with 32 px images (CIFAR-10, 10 minutes on 2 Zen4 cores; see
  ``benchmarks/README.md``). Meant as the default for ``--time-budget`` runs on CPU.
* :func:`lightly_cifar10_protocol`: Lightly's published CIFAR-10 benchmark setting
  (ResNet-18 with CIFAR stem, batch 512, 200 epochs, SimCLR), for a GPU.
"""

from __future__ import annotations

from contrastive.backbones import BackboneConfig
from contrastive.losses import LossConfig
from contrastive.methods.config import MethodConfig
from contrastive.training.config import OptimConfig, TrainConfig
from contrastive.views.config import view_preset


def cpu_budget_recipe(
    data: str = "", out: str = "runs/cpu-budget", time_budget: str | None = "10m"
) -> TrainConfig:
    """SimCLR for minutes of training on a few CPU cores, 32 px images.

    Why each choice (measured on CIFAR-10, 2 cores; ``benchmarks/README.md``):

    * Backbone ``resnet18_half_pooled``: half-width ResNet-18 with a 3x3 stride-1 stem conv
      and the max-pool kept, so 32 px images enter layer1 at 16 px. It costs about the
      FLOPs of the ImageNet-stem ResNet-18 at 32 px (which sees 8 px maps after its stem,
      too coarse for CIFAR), as does ``resnet18_quarter`` with the CIFAR stem; on the shared
      2-core machine it stepped at least as fast as either. Chosen from step-rate probes,
      not an accuracy sweep: 10 min gave kNN 41.9% vs 34.8% for Lightly's example recipe.
    * Batch 256, bf16 autocast where native, channels-last, batched on-device views from
      the decoded cache: the data path costs almost nothing next to the step.
    * NT-Xent at temperature 0.2: sharper than SimCLR's 0.5, learns faster in short runs.
    * Crops of 20-100% of the image (``mocov2``-like scale) rather than 8-100%: with only
      a few epochs, very small crops are mostly noise.
    * Base learning rate 0.3 (batch 256; 2.5x Lightly's 0.12), 5% warm-up, cosine to 0
      over the steps the budget planner fits in.
    """
    return TrainConfig(
        data=data,
        out=out,
        views=view_preset("cifar", crop_scale=(0.2, 1.0)),
        backbone=BackboneConfig("resnet18_half_pooled"),
        method=MethodConfig("simclr"),
        loss=LossConfig("ntxent", temperature=0.2),
        optim=OptimConfig(base_learning_rate=0.3, weight_decay=5e-4, warmup_fraction=0.05),
        batch_size=256,
        num_workers=0,
        precision="auto",
        view_pipeline="batched",
        channels_last=True,
        time_budget=time_budget,
        checkpoint_every_n_epochs=1000,
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
