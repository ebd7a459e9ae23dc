"""``contrastive train``: train an encoder on a folder of images."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from contrastive.backbones import BACKBONES
from contrastive.losses import DISTANCES, LOSSES
from contrastive.methods import METHODS
from contrastive.recipes import RECIPES, choose_recipe
from contrastive.training.config import (
    OPTIMIZERS,
    VIEW_PIPELINES,
    TrainConfig,
    load_config_file,
)
from contrastive.views.config import VIEW_PRESETS, view_preset

HELP = "train an encoder on a folder of images (no labels needed)"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help=HELP,
        description=HELP + ". Flags override values from --config.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_training_arguments(parser)
    parser.set_defaults(func=run)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``train`` and ``demo``; defaults of None mean "keep config value"."""
    data = parser.add_argument_group("data and run")
    data.add_argument("--data", help="folder of training images, read recursively")
    data.add_argument("--out", help="run directory to create (or continue with --resume)")
    data.add_argument("--config", help="YAML/JSON file with a (partial) TrainConfig")
    data.add_argument(
        "--recipe",
        choices=["auto", *RECIPES],
        default="auto",
        help="base settings that --config and flags override. cpu-budget: tuned for short "
        "--time-budget runs on a few CPU cores (quarter-width ResNet-18, 24 px views "
        "evaluated at 32 px); "
        "lightly-cifar10: Lightly's CIFAR-10 GPU benchmark; default: plain ResNet-18 "
        "SimCLR. auto = cpu-budget when --time-budget is given and no GPU is used",
    )
    data.add_argument(
        "--resume", action="store_true", help="continue the run in --out from checkpoints/last.ckpt"
    )
    data.add_argument("--seed", type=int, help="random seed (default 0)")
    data.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="deterministic algorithms: the same seed gives the same weights, "
        "also across an interrupt and --resume (slower on GPU)",
    )
    model = parser.add_argument_group("method")
    model.add_argument("--method", choices=sorted(METHODS), help="default simclr")
    model.add_argument("--loss", choices=LOSSES, help="default ntxent")
    model.add_argument("--distance", choices=DISTANCES, help="distance of --loss distance")
    model.add_argument(
        "--temperature", type=float, help="loss temperature (default: 0.5 SimCLR, 0.2 MoCo)"
    )
    model.add_argument("--backbone", choices=BACKBONES, help="default resnet18")
    model.add_argument(
        "--small-image-stem",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="3x3 stride-1 stem without max-pool (32-64 px)",
    )
    model.add_argument("--queue-size", type=int, help="MoCo queue length (default 4096)")
    views = parser.add_argument_group("views")
    views.add_argument(
        "--views", choices=sorted(VIEW_PRESETS), help="augmentation preset (default simclr)"
    )
    views.add_argument("--input-size", type=int, help="view size in pixels")
    views.add_argument(
        "--eval-input-size",
        type=int,
        help="image size for evaluation and embedding (default: --input-size)",
    )
    views.add_argument("--noise-probability", type=float, help="Gaussian-noise probability")
    views.add_argument(
        "--noise-sigma",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="Gaussian-noise std range on the 0..1 scale",
    )
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--batch-size", type=int, help="images per step (default 256)")
    optim.add_argument("--epochs", type=int, help="default 100")
    optim.add_argument(
        "--time-budget",
        help="wall-clock budget, e.g. 90s, 10m, 1h: plans the number of steps "
        "(warm-up, cosine and MoCo momentum) to end at the budget",
    )
    optim.add_argument("--lr", type=float, help="base learning rate per 256 images (0.12)")
    optim.add_argument("--optimizer", choices=OPTIMIZERS, help="default sgd")
    optim.add_argument("--weight-decay", type=float, help="default 5e-4")
    hardware = parser.add_argument_group("hardware")
    hardware.add_argument("--num-workers", type=int, help="DataLoader workers (default 2)")
    hardware.add_argument("--accelerator", help="auto, cpu or gpu (default auto)")
    hardware.add_argument("--devices", help="devices per node, e.g. 1, 4 or auto")
    hardware.add_argument("--num-nodes", type=int, help="machines for multi-node DDP")
    hardware.add_argument(
        "--sync-batchnorm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="synchronise batch-norm statistics across processes (multi-GPU DDP)",
    )
    hardware.add_argument(
        "--precision", help="auto (bf16 where native, else fp32), 32-true, bf16-mixed, ..."
    )
    hardware.add_argument(
        "--view-pipeline",
        choices=VIEW_PIPELINES,
        help="batched: views on the training device (default); per_image: "
        "torchvision pipeline in DataLoader workers",
    )
    hardware.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decode images once into a reusable uint8 cache (default on)",
    )
    hardware.add_argument("--cache-dir", help="where decoded caches live")
    hardware.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the backbone",
    )
    monitor = parser.add_argument_group("checkpoints and monitoring")
    monitor.add_argument("--checkpoint-every", type=int, help="epochs between checkpoints")
    monitor.add_argument("--val-train", help="labeled folder: kNN bank of the online monitor")
    monitor.add_argument("--val-test", help="labeled folder: queries of the online monitor")
    monitor.add_argument("--monitor-every", type=int, help="epochs between monitor runs")


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """Merges defaults, ``--config`` and explicit flags (in that order of precedence)."""
    config = base or TrainConfig()
    if getattr(args, "config", None):
        config = TrainConfig.from_dict(_deep_merge(config.to_dict(), load_config_file(args.config)))
    views = config.views
    if args.views is not None:
        views = view_preset(args.views)
    view_changes: dict[str, Any] = {}
    if args.input_size is not None:
        view_changes["input_size"] = args.input_size
        # A recipe's evaluation and cache sizes belong to its own view size, not this one.
        view_changes["eval_input_size"] = None
        config = replace(config, stored_size=None)
    if args.eval_input_size is not None:
        view_changes["eval_input_size"] = args.eval_input_size
    if args.noise_probability is not None:
        view_changes["noise_probability"] = args.noise_probability
    if args.noise_sigma is not None:
        view_changes["noise_sigma"] = tuple(args.noise_sigma)
    views = replace(views, **view_changes)
    backbone = _replace(config.backbone, name=args.backbone, small_image_stem=args.small_image_stem)
    method = _replace(config.method, name=args.method, queue_size=args.queue_size)
    loss = _replace(
        config.loss, name=args.loss, distance=args.distance, temperature=args.temperature
    )
    optim = _replace(
        config.optim,
        base_learning_rate=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
    )
    devices: Any = args.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    top = {
        "data": args.data,
        "out": args.out,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "num_workers": args.num_workers,
        "accelerator": args.accelerator,
        "devices": devices,
        "num_nodes": args.num_nodes,
        "precision": args.precision,
        "checkpoint_every_n_epochs": args.checkpoint_every,
        "val_train": args.val_train,
        "val_test": args.val_test,
        "monitor_every_n_epochs": args.monitor_every,
        "time_budget": args.time_budget,
        "view_pipeline": args.view_pipeline,
        "cache_images": args.cache,
        "cache_dir": args.cache_dir,
        "compile": args.compile,
        "deterministic": args.deterministic,
        "sync_batchnorm": args.sync_batchnorm,
    }
    return replace(
        config,
        views=views,
        backbone=backbone,
        method=method,
        loss=loss,
        optim=optim,
        **{k: v for k, v in top.items() if v is not None},
    )


def _replace(component: Any, **changes: Any) -> Any:
    return replace(component, **{k: v for k, v in changes.items() if v is not None})


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _saved_config(args: argparse.Namespace) -> TrainConfig | None:
    """The configuration of the run being resumed, so flags not given keep its values
    (a plain ``--resume`` must not reset ``epochs`` to the default)."""
    saved = Path(args.out or "") / "config.yaml"
    return TrainConfig.from_dict(load_config_file(saved)) if args.out and saved.is_file() else None


def _recipe_config(args: argparse.Namespace) -> TrainConfig:
    """The base configuration named by ``--recipe`` (``auto``: see :func:`choose_recipe`)."""
    import torch

    name = args.recipe
    accelerator = args.accelerator or "auto"
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    chosen = choose_recipe(name, args.time_budget, on_gpu)
    if name == "auto" and chosen != "default":
        print(
            f"using the {chosen} recipe for a --time-budget run on CPU "
            "(flags override it; --recipe default for plain settings)",
            file=sys.stderr,
        )
    return RECIPES[chosen]()


def run(args: argparse.Namespace) -> int:
    from contrastive.errors import ContrastiveError
    from contrastive.training.interrupt import TrainingInterrupted
    from contrastive.training.train import train

    base = _saved_config(args) if args.resume else _recipe_config(args)
    config = config_from_args(args, base=base)
    if not config.data and not args.resume:
        raise ContrastiveError("--data is required (or run `contrastive demo`)")
    if not args.out and not (args.config and "out" in load_config_file(args.config)):
        raise ContrastiveError("--out is required: the run directory to write")
    try:
        result = train(config, resume=args.resume)
    except TrainingInterrupted as stop:
        # One line saying how to continue, instead of the generic "interrupted".
        print(stop, file=sys.stderr)
        return stop.exit_code
    from pytorch_lightning.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # one summary, not one per DDP process
        print(f"trained on {result.num_images} images; run directory: {result.run_dir}")
        print(f"backbone weights (plain torchvision state_dict): {result.backbone_path}")
    return 0
