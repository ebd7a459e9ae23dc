"""The built-in demo: train on scikit-learn's digits, then compare kNN with random init.

Runs anywhere, offline, in about a minute on two CPU cores::

    contrastive demo

:func:`quick_train` trains the same small recipe for a time budget (or a few epochs) into a
folder it may reuse, which is what the notebooks in ``notebooks/`` need.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastive.backbone_config import BackboneConfig
from contrastive.cache_root import cache_dir
from contrastive.data.demo import ensure_demo_digits
from contrastive.errors import ContrastiveError
from contrastive.losses.config import LossConfig
from contrastive.methods.config import MethodConfig
from contrastive.training.config import OptimConfig, TrainConfig
from contrastive.views.config import view_preset

# The functions that train and embed import torch when called, so that `contrastive demo
# --help` and the recipe (demo_config) answer without it.
if TYPE_CHECKING:
    import torch

    from contrastive.training.train import TrainResult

DEMO_K = 20
DEMO_T = 0.1
#: Training epochs of the demo recipe (22 steps each at batch 64).
DEMO_EPOCHS = 30

log = logging.getLogger(__name__)


def demo_config(out: str | Path | None = None, data: str | Path | None = None) -> TrainConfig:
    """The demo's recipe: a quarter-width ResNet-18 with a small-image stem on 16 px views.

    The digits hold 8x8 pixels of detail, so 16 px views show all of it for a quarter of
    the work of 32 px ones; whole images are evaluated at 20 px (FixRes, as the planner
    does). Flips are off because mirrored digits are different symbols. NT-Xent at T=0.1
    with a 2048-wide head, as the planner plans: at SimCLR's T=0.5 the same 30 epochs
    reached 80.8% against raw pixels' 81.3%, at T=0.1 90.8% (fp32, AVX2 CPU;
    ``benchmarks/README.md``, "Demo").
    """
    root = Path(data) if data is not None else ensure_demo_digits() / "train"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = Path(out) if out is not None else cache_dir() / "runs" / f"demo-{stamp}"
    return TrainConfig(
        data=str(root),
        out=str(run),
        views=view_preset(
            "cifar",
            input_size=16,
            eval_input_size=20,
            horizontal_flip_probability=0.0,
            crop_scale=(0.3, 1.0),
        ),
        backbone=BackboneConfig("resnet18_quarter", small_image_stem=True),
        method=MethodConfig("simclr", projection_hidden_dim=2048),
        loss=LossConfig(temperature=0.1),
        optim=OptimConfig(base_learning_rate=0.3),
        batch_size=64,
        # Fixed epochs rather than a time budget, so the demo's result does not depend on
        # how busy the machine is.
        epochs=DEMO_EPOCHS,
        num_workers=0,
        checkpoint_every_n_epochs=10,
    )


def clear_run_dir(path: str | os.PathLike) -> Path:
    """Removes an earlier run from ``path`` so a new run can be written there.

    Only a folder that is empty or holds a run (its ``config.yaml``) is removed; anything
    else is left alone.

    Returns:
        The (now absent) folder.

    Raises:
        ContrastiveError: If ``path`` is a file, or a non-empty folder without a run.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        return folder
    if not folder.is_dir():
        raise ContrastiveError(f"{folder} is a file, not a run folder")
    if any(folder.iterdir()) and not (folder / "config.yaml").is_file():
        raise ContrastiveError(
            f"{folder} is not empty and holds no run (no config.yaml); "
            "refusing to delete it: choose another output folder"
        )
    shutil.rmtree(folder)
    return folder


def quick_train(
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    time_budget: str | None = "30s",
    epochs: int | None = None,
    **overrides: Any,
) -> TrainResult:
    """Trains the demo recipe (:func:`demo_config`) briefly, replacing an earlier run in ``out``.

    Meant for notebooks and smoke tests: re-running them trains afresh instead of failing
    on the run folder left by the previous time (see :func:`clear_run_dir`). On a CPU the
    run is kept in fp32 unless ``precision`` is overridden: bf16 autocast is much slower
    than fp32 on CPUs without bf16 matrix units.

    Args:
        out: Run folder.
        data: Training images; the demo digits' ``train`` split by default.
        time_budget: Wall-clock training budget (``"30s"``, ``"2m"``, seconds).
        epochs: Train this many epochs instead of a time budget.
        **overrides: Other :class:`TrainConfig` fields, e.g. ``loss=LossConfig(...)``.

    Returns:
        The training result; ``result.run_dir`` is ``out``.
    """
    import torch

    config = demo_config(out=out, data=data)
    if epochs is not None:
        overrides = {
            "epochs": int(epochs),
            "checkpoint_every_n_epochs": int(epochs),
            "time_budget": None,
            **overrides,
        }
    else:
        overrides = {"time_budget": time_budget, **overrides}
    if "precision" not in overrides and not torch.cuda.is_available():
        overrides["precision"] = "32-true"
    config = config.with_overrides(**overrides)
    if "batch_size" not in overrides:
        # A notebook pointed at a small folder should train, not stop on the demo's batch.
        config = config.with_overrides(
            batch_size=fitting_batch_size(config.data, config.batch_size)
        )
    from contrastive.training.train import train

    clear_run_dir(config.out)
    return train(config)


def fitting_batch_size(data: str | os.PathLike, batch_size: int) -> int:
    """``batch_size`` halved until an epoch of the folder holds at least two steps.

    Args:
        data: The training folder.
        batch_size: The recipe's batch size.

    Returns:
        ``batch_size``, or the largest halving of it (at least 2) that is at most half the
        folder's images.
    """
    from contrastive.data.folder import list_images

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # training scans the folder again and warns then
        count = len(list_images(data))
    fitted = batch_size
    while fitted > 2 and fitted > count // 2:
        fitted //= 2
    if fitted < batch_size:
        log.info("%d images in %s: batch size %d instead of %d", count, data, fitted, batch_size)
    return fitted


@dataclass
class DemoResult:
    """kNN top-1 of the trained backbone and of its two baselines on the demo's test split.

    Attributes:
        trained_top1: The trained backbone's features.
        random_init_top1: The same architecture at the weights training started from.
        raw_pixels_top1: The evaluation-size pixels themselves (see
            :class:`~contrastive.embeddings.RawPixels`).
        train_seconds: Wall-clock training time.
        run_dir: The run folder.
    """

    trained_top1: float
    random_init_top1: float
    raw_pixels_top1: float
    train_seconds: float
    run_dir: Path

    def table(self) -> str:
        """A small text table of the result."""
        rows = (
            ("raw pixels", self.raw_pixels_top1),
            ("random init (same arch)", self.random_init_top1),
            ("trained (contrastive)", self.trained_top1),
        )
        return "\n".join(
            [
                f"kNN top-1 on the moved digits' test split (k={DEMO_K}, T={DEMO_T}, cosine):",
                f"  {'features':<26}{'top-1':>8}",
                *(f"  {name:<26}{top1:>8.1%}" for name, top1 in rows),
                f"trained in {self.train_seconds:.0f} s; run directory: {self.run_dir}",
            ]
        )


def knn_top1(
    extractors: dict[str, torch.nn.Module], config: TrainConfig, train_dir: Path, test_dir: Path
) -> dict[str, float]:
    """kNN top-1 of each extractor's features: bank from ``train_dir``, queries from ``test_dir``.

    All extractors see the same evaluation-size images, in one pass over each folder.

    Returns:
        ``{extractor name: top-1 accuracy}``.
    """
    import torch

    from contrastive.embeddings import embed_folder
    from contrastive.evaluation.knn import knn_classify
    from contrastive.evaluation.metrics import topk_accuracy

    bank = embed_folder(train_dir, config.views, extractors, progress=False)
    queries = embed_folder(test_dir, config.views, extractors, progress=False)
    accuracies = {}
    for name in extractors:
        ranking = knn_classify(
            torch.from_numpy(bank[name].embeddings),
            torch.from_numpy(bank[name].labels),
            torch.from_numpy(queries[name].embeddings),
            k=DEMO_K,
            temperature=DEMO_T,
        )
        truth = torch.from_numpy(queries[name].labels)
        accuracies[name] = topk_accuracy(ranking, truth, (1,))[1]
    return accuracies


def run_demo(config: TrainConfig | None = None, digits: str | Path | None = None) -> DemoResult:
    """Trains on the demo digits and evaluates the trained backbone against its baselines.

    Args:
        config: The recipe; :func:`demo_config` by default.
        digits: Folder with the labelled ``train/`` and ``test/`` splits to evaluate on;
            the built-in demo digits by default.
    """
    import torch

    from contrastive.backbones import build_backbone
    from contrastive.embeddings import RawPixels
    from contrastive.training.train import train

    config = config or demo_config()
    digits = Path(digits) if digits is not None else ensure_demo_digits()
    started = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - started
    # Same seed as training: the very weights the run started from.
    torch.manual_seed(config.seed)
    random_init, _ = build_backbone(config.backbone)
    top1 = knn_top1(
        {"trained": result.backbone, "random_init": random_init, "raw_pixels": RawPixels()},
        config,
        digits / "train",
        digits / "test",
    )
    return DemoResult(
        trained_top1=top1["trained"],
        random_init_top1=top1["random_init"],
        raw_pixels_top1=top1["raw_pixels"],
        train_seconds=seconds,
        run_dir=result.run_dir,
    )
