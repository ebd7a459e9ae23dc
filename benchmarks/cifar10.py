"""CIFAR-10 benchmark: train for a wall-clock budget, evaluate the final weights, log a row.

Run from the repository root, e.g. (10 minutes, the CPU-budget recipe)::

    python benchmarks/cifar10.py --recipe cpu --budget 10m
    python benchmarks/cifar10.py --recipe cpu --budget 10m --loss distance --distance cosine
    python benchmarks/cifar10.py --recipe cpu --budget 10m --method moco
    python benchmarks/cifar10.py --peer-baseline --budget 10m   # Lightly's example recipe
    python benchmarks/cifar10.py --raw-pixels                    # floor row

Each run extracts CIFAR-10 (JPEG class folders) to the cache if needed, trains, embeds the
full train (50k) and test (10k) sets with the FINAL backbone, and scores kNN top-1 (k=200,
T=0.1, cosine, as Lightly's benchmark) and the linear probe
(:func:`contrastive.evaluation.linear.linear_probe`). It appends one JSON line to
``benchmarks/results/cifar10.jsonl`` (command, git commit, machine, load, wall-clock, peak
memory) and regenerates ``benchmarks/results/cifar10.md``.

Published GPU protocol (Lightly's CIFAR-10 benchmark: ResNet-18 CIFAR stem, batch 512,
200 epochs, SimCLR, kNN k=200 T=0.1)::

    python benchmarks/cifar10.py --protocol lightly-gpu
    # quick CPU check of the same command: --protocol lightly-gpu --epochs 1 --subset 100
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import (
    RESULTS,
    append_row,
    budget_seconds,
    embed_pair,
    git_commit,
    knn_top1,
    load_run,
    machine,
    peer_baseline,
)

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import BACKBONES
from contrastive.data.cifar10 import ensure_cifar10, subset
from contrastive.embeddings import RawPixels
from contrastive.evaluation.knn import knn_rankings
from contrastive.evaluation.linear import linear_probe
from contrastive.evaluation.metrics import topk_accuracy
from contrastive.evaluation.report import format_table
from contrastive.losses import LossConfig
from contrastive.recipes import cpu_budget_recipe, lightly_cifar10_protocol
from contrastive.training.config import TrainConfig
from contrastive.views.config import view_preset


# ------------------------------------------------------------------------------ evaluation
def evaluate(
    backbone: torch.nn.Module | None,
    root: Path,
    input_size: int = 32,
    linear: bool = True,
    batch_size: int = 512,
) -> dict:
    """kNN (k=200, T=0.1) and linear probe on the full train/test folders, final weights."""
    views = view_preset("cifar", input_size=input_size)
    extractor = RawPixels() if backbone is None else backbone
    started = time.perf_counter()
    pair = embed_pair(extractor, root / "train", root / "test", views, batch_size)
    result: dict = {"embed_s": round(time.perf_counter() - started, 1)}
    started = time.perf_counter()
    if backbone is None:  # raw pixels: the anchors' 1-NN (L2) floor, plus k=200 cosine
        ranked = knn_rankings(
            pair.train_features,
            pair.train_labels,
            pair.test_features,
            (1,),
            0.1,
            len(pair.classes),
            metric="euclidean",
        )[1]
        result["raw_1nn_l2"] = topk_accuracy(ranked, pair.test_labels, (1,))[1]
    result["knn_top1"] = knn_top1(pair)
    result["knn_s"] = round(time.perf_counter() - started, 1)
    if linear:
        started = time.perf_counter()
        probe = linear_probe(
            pair.train_features,
            pair.train_labels,
            pair.test_features,
            pair.test_labels,
            len(pair.classes),
        )
        result["linear_top1"] = probe.summary["top1"]
        result["linear_wd"] = probe.weight_decay
        result["linear_s"] = round(time.perf_counter() - started, 1)
    return result


# ----------------------------------------------------------------------------- our runs
def build_config(args: argparse.Namespace, train_dir: Path, out: Path) -> TrainConfig:
    if args.protocol == "lightly-gpu":
        config = lightly_cifar10_protocol(str(train_dir), str(out), epochs=args.epochs or 200)
    else:
        config = cpu_budget_recipe(str(train_dir), str(out), time_budget=args.budget)
        if args.epochs:
            config = config.with_overrides(epochs=args.epochs, time_budget=None)
    views = config.views
    if args.input_size:
        views = replace(views, input_size=args.input_size)
    if args.eval_input_size:
        views = replace(views, eval_input_size=args.eval_input_size)
    if args.crop_min is not None:
        views = replace(views, crop_scale=(args.crop_min, 1.0))
    if args.jitter is not None:
        views = replace(views, color_jitter_strength=args.jitter)
    backbone = config.backbone
    if args.backbone:
        backbone = BackboneConfig(args.backbone, args.small_image_stem)
    method = replace(config.method, name=args.method)
    if args.queue_size:
        method = replace(method, queue_size=args.queue_size)
    if args.proj_dim:
        method = replace(method, projection_output_dim=args.proj_dim)
    if args.proj_hidden:
        method = replace(method, projection_hidden_dim=args.proj_hidden)
    loss = LossConfig(
        args.loss, args.temperature if args.temperature else config.loss.temperature, args.distance
    )
    optim = config.optim
    if args.lr:
        optim = replace(optim, base_learning_rate=args.lr)
    if args.optimizer:
        optim = replace(optim, optimizer=args.optimizer)
    if args.warmup is not None:
        optim = replace(optim, warmup_fraction=args.warmup)
    if args.weight_decay is not None:
        optim = replace(optim, weight_decay=args.weight_decay)
    return config.with_overrides(
        views=views,
        backbone=backbone,
        method=method,
        loss=loss,
        optim=optim,
        batch_size=args.batch_size or config.batch_size,
        seed=args.seed,
        precision=args.precision or config.precision,
        num_workers=args.workers if args.workers is not None else config.num_workers,
        stored_size=args.stored_size or config.stored_size,
    )


def train_ours(config: TrainConfig) -> tuple[torch.nn.Module, dict]:
    from contrastive.training.train import train

    started = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - started
    steps = result.config.max_steps or result.module.global_step
    steps = int(result.module.global_step or steps)
    images = steps * config.batch_size
    return result.backbone.eval(), {
        "steps": steps,
        "images_seen": images,
        "epochs_seen": round(images / result.num_images, 2),
        "train_s": round(seconds, 1),
        "train_images_per_s": round(images / seconds, 1),
    }


# --------------------------------------------------------------------------- the table
COLUMNS = (
    "run",
    "method",
    "loss",
    "backbone",
    "batch",
    "budget",
    "steps",
    "img/s",
    "kNN",
    "linear",
    "train s",
    "total s",
    "peak MiB",
    "commit",
    "load",
)


def write_markdown(jsonl: Path, markdown: Path) -> None:
    rows = []
    for line in jsonl.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
        rows.append(
            [
                r.get("name", ""),
                r.get("method", "-"),
                r.get("loss", "-"),
                r.get("backbone", "-"),
                str(r.get("batch_size", "-")),
                str(r.get("budget", "-")),
                str(r.get("steps", "-")),
                str(r.get("train_images_per_s", "-")),
                pct(r.get("knn_top1")),
                pct(r.get("linear_top1")),
                str(r.get("train_s", "-")),
                str(r.get("total_s", "-")),
                str(r.get("peak_mib", "-")),
                r.get("commit", "?"),
                str(r.get("load_start", "-")),
            ]
        )
    first = json.loads(jsonl.read_text().splitlines()[0]) if rows else {}
    header = (
        "# CIFAR-10 benchmark rows\n\nGenerated by `benchmarks/cifar10.py` from "
        "`cifar10.jsonl` (one JSON object per run, with the exact command). kNN: "
        "top-1, k=200, T=0.1, cosine, final weights, 50k train bank, 10k test; linear: "
        "`linear_probe` on the same embeddings. Machine: "
        f"{first.get('machine', {}).get('cpu', '?')}, "
        f"{first.get('machine', {}).get('cores', '?')} cores; load = 1-min load "
        "average at the start (other jobs share the machine).\n\n"
    )
    markdown.write_text(header + format_table(COLUMNS, rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=None, help="row label")
    parser.add_argument("--budget", default="10m", help="training wall-clock budget")
    parser.add_argument("--recipe", default="cpu", choices=["cpu"])
    parser.add_argument(
        "--protocol",
        default=None,
        choices=["lightly-gpu"],
        help="Lightly's published CIFAR-10 GPU setting (epochs, not budget)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="train epochs, not a budget")
    parser.add_argument(
        "--peer-baseline",
        action="store_true",
        help="Lightly's example recipe with Lightly's own API, same budget",
    )
    parser.add_argument("--raw-pixels", action="store_true", help="raw-pixel floor row")
    parser.add_argument("--method", default="simclr", choices=["simclr", "moco"])
    parser.add_argument("--loss", default="ntxent", choices=["ntxent", "distance"])
    parser.add_argument(
        "--distance", default="cosine", choices=["cosine", "euclidean", "squared_euclidean"]
    )
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--backbone", default=None, choices=BACKBONES)
    parser.add_argument("--small-image-stem", action="store_true")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="base lr (for batch 256)")
    parser.add_argument("--optimizer", default=None, choices=["sgd", "lars"])
    parser.add_argument("--warmup", type=float, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--crop-min", type=float, default=None)
    parser.add_argument(
        "--stored-size", type=int, default=None, help="side of the decoded cache's images"
    )
    parser.add_argument("--jitter", type=float, default=None, help="color jitter strength")
    parser.add_argument("--queue-size", type=int, default=None)
    parser.add_argument("--proj-dim", type=int, default=None)
    parser.add_argument("--proj-hidden", type=int, default=None)
    parser.add_argument("--precision", default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--subset",
        type=int,
        default=None,
        help="train on this many images per class (evaluation stays full)",
    )
    parser.add_argument("--no-linear", action="store_true", help="skip the linear probe")
    parser.add_argument(
        "--eval-input-size",
        type=int,
        default=None,
        help="image size for evaluation (default: the training view size)",
    )
    parser.add_argument(
        "--eval-subset",
        type=int,
        default=None,
        help="evaluate on this many train (bank) and test images per class "
        "(quick checks; default: all 50k / 10k)",
    )
    parser.add_argument(
        "--evaluate-run",
        default=None,
        help="evaluate the backbone.pt of a finished run directory instead "
        "of training (its config.yaml and metrics.csv give the row)",
    )
    parser.add_argument("--results", default=str(RESULTS / "cifar10.jsonl"))
    parser.add_argument("--runs", default=None, help="run directories (default: a temp dir)")
    args = parser.parse_args()

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    load_start = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    root = ensure_cifar10()
    train_dir = root / "train"
    scratch = Path(args.runs or tempfile.mkdtemp(prefix="cifar10-bench-"))
    if args.subset:
        train_dir = scratch / f"train{args.subset}-seed{args.seed}"
        if not train_dir.exists():
            subset(root / "train", train_dir, args.subset, seed=args.seed)
    eval_root = root
    if args.eval_subset:
        eval_root = scratch / f"eval{args.eval_subset}"
        if not (eval_root / "train").exists():
            subset(root / "train", eval_root / "train", args.eval_subset, seed=0)
            subset(root / "test", eval_root / "test", min(args.eval_subset, 1000), seed=0)

    row: dict = {
        "command": command,
        "commit": git_commit(),
        "machine": machine(),
        "load_start": load_start,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    input_size = 32
    if args.raw_pixels:
        backbone, stats = None, {}
        row.update(name=args.name or "raw pixels", method="-", loss="-", backbone="raw pixels")
    elif args.peer_baseline:
        backbone, stats = peer_baseline(train_dir, budget_seconds(args.budget), seed=args.seed)
        row.update(
            name=args.name or "Lightly example (peer baseline)",
            method="simclr",
            loss="ntxent",
            backbone="resnet18 (ImageNet stem)",
            batch_size=256,
            budget=args.budget,
            precision="32-true",
            lr=0.12,
        )
    else:
        if args.evaluate_run:
            config, backbone, stats = load_run(Path(args.evaluate_run))
        else:
            config = build_config(args, train_dir, scratch / f"run-{time.time_ns()}")
            backbone, stats = train_ours(config)
        input_size = config.views.evaluation_size
        stem = "CIFAR stem" if config.backbone.small_image_stem else "stem as named"
        row.update(
            name=args.name or f"{config.method.name}+{config.loss.name}",
            method=config.method.name,
            loss=config.loss.name
            + (f"({config.loss.distance})" if config.loss.name == "distance" else ""),
            backbone=f"{config.backbone.name} ({stem})",
            batch_size=config.batch_size,
            budget=config.time_budget or f"{config.epochs} ep",
            config=config.to_dict(),
        )
    row.update(stats)
    input_size = args.eval_input_size or input_size
    row["eval_input_size"] = input_size
    row.update(evaluate(backbone, eval_root, input_size, linear=not args.no_linear))
    row["total_s"] = round(time.perf_counter() - started, 1)
    append_row(row, Path(args.results), write_markdown)


if __name__ == "__main__":
    main()
