"""The built-in demo: train on scikit-learn's digits, then compare kNN with random init.

Runs anywhere, offline, in about a minute on two CPU cores::

    contrastive demo

:func:`quick_train` trains the same small recipe for a time budget (or a few epochs) into a
folder it may reuse, which is what the notebooks in ``notebooks/`` need.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from contrastive.backbones import BackboneConfig, build_backbone
from contrastive.data.cifar10 import cache_dir
from contrastive.data.demo import ensure_demo_digits
from contrastive.embeddings import embed_folder
from contrastive.errors import ContrastiveError
from contrastive.evaluation.knn import knn_classify
from contrastive.methods.config import MethodConfig
from contrastive.training.config import OptimConfig, TrainConfig
from contrastive.training.train import TrainResult, train
from contrastive.views.config import view_preset

DEMO_K = 20


def demo_config(out: str | Path | None = None, data: str | Path | None = None) -> TrainConfig:
    """The demo's recipe: a quarter-width ResNet-18 with a small-image stem on 32 px digits.

    Flips are off because mirrored digits are different symbols.
    """
    root = Path(data) if data is not None else ensure_demo_digits() / "train"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = Path(out) if out is not None else cache_dir() / "runs" / f"demo-{stamp}"
    return TrainConfig(
        data=str(root),
        out=str(run),
        views=view_preset("cifar", horizontal_flip_probability=0.0, crop_scale=(0.3, 1.0)),
        backbone=BackboneConfig("resnet18_quarter", small_image_stem=True),
        method=MethodConfig("simclr"),
        optim=OptimConfig(base_learning_rate=0.12),
        batch_size=128,
        # Fixed epochs rather than a time budget, so the demo's result does not depend on
        # how busy the machine is.
        epochs=25,
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
    clear_run_dir(config.out)
    return train(config)


@dataclass
class DemoResult:
    """kNN top-1 of the trained backbone and of the same backbone at random init."""

    trained_top1: float
    random_init_top1: float
    train_seconds: float
    run_dir: Path

    def table(self) -> str:
        """A small text table of the result."""
        return "\n".join(
            [
                f"kNN top-1 on the digits test split (k={DEMO_K}, T=0.1, cosine):",
                f"  {'backbone':<26}{'top-1':>8}",
                f"  {'random init (same arch)':<26}{self.random_init_top1:>8.1%}",
                f"  {'trained (contrastive)':<26}{self.trained_top1:>8.1%}",
                f"trained in {self.train_seconds:.0f} s; run directory: {self.run_dir}",
            ]
        )


def knn_top1(
    backbone: torch.nn.Module, config: TrainConfig, train_dir: Path, test_dir: Path
) -> float:
    """kNN top-1 of ``backbone`` features, bank from ``train_dir``, queries from ``test_dir``."""
    bank = embed_folder(train_dir, config.views, {"f": backbone}, progress=False)["f"]
    queries = embed_folder(test_dir, config.views, {"f": backbone}, progress=False)["f"]
    ranking = knn_classify(
        torch.from_numpy(bank.embeddings),
        torch.from_numpy(bank.labels),
        torch.from_numpy(queries.embeddings),
        k=DEMO_K,
        temperature=0.1,
    )
    return float((ranking[:, 0] == torch.from_numpy(queries.labels)).float().mean())


def run_demo(config: TrainConfig | None = None) -> DemoResult:
    """Trains on the digits and evaluates trained vs random-init backbones."""
    config = config or demo_config()
    digits = ensure_demo_digits()
    started = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - started
    # Same seed as training: the very weights the run started from.
    torch.manual_seed(config.seed)
    random_init, _ = build_backbone(config.backbone)
    return DemoResult(
        trained_top1=knn_top1(result.backbone, config, digits / "train", digits / "test"),
        random_init_top1=knn_top1(random_init, config, digits / "train", digits / "test"),
        train_seconds=seconds,
        run_dir=result.run_dir,
    )
