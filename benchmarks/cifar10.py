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
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from contrastive.backbones import BACKBONES, BackboneConfig
from contrastive.data.cifar10 import ensure_cifar10, subset
from contrastive.embeddings import RawPixels, embed_folder
from contrastive.evaluation.knn import knn_rankings
from contrastive.evaluation.labels import labeled_pair
from contrastive.evaluation.linear import linear_probe
from contrastive.evaluation.metrics import topk_accuracy
from contrastive.evaluation.report import format_table
from contrastive.losses import LossConfig
from contrastive.recipes import cpu_budget_recipe, lightly_cifar10_protocol
from contrastive.training.config import TrainConfig
from contrastive.views.config import view_preset

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


# ----------------------------------------------------------------------------- provenance
def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
    }


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            text=True,
            capture_output=True,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def peak_memory_mib() -> float:
    """Peak resident memory of this process and of its (waited-for) children, MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024  # Linux reports KiB


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
    train = embed_folder(
        root / "train", views, {"f": extractor}, batch_size=batch_size, progress=False
    )["f"]
    test = embed_folder(
        root / "test", views, {"f": extractor}, batch_size=batch_size, progress=False
    )["f"]
    pair = labeled_pair(train, test)
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
    ranked = knn_rankings(
        pair.train_features, pair.train_labels, pair.test_features, (200,), 0.1, len(pair.classes)
    )[200]
    result["knn_top1"] = topk_accuracy(ranked, pair.test_labels, (1,))[1]
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


# ------------------------------------------------------------------------- peer baseline
def peer_baseline(
    train_dir: Path, budget_s: float, batch_size: int = 256, workers: int = 2, seed: int = 0
) -> tuple[torch.nn.Module, dict]:
    """Lightly's own SimCLR example recipe, written with Lightly's public API, for a budget.

    torchvision resnet18 (ImageNet stem, fc removed), ``SimCLRProjectionHead(512, 512, 128)``,
    ``NTXentLoss``, ``SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)``
    over ``LightlyDataset`` in a DataLoader, SGD lr 0.06 x batch/128 (momentum 0.9, wd 5e-4,
    Lightly's CIFAR-10 benchmark), fp32, cosine schedule over the steps that fit the budget
    (measured on the first steps, as our planner does).
    """
    import torchvision
    from lightly.data import LightlyDataset
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    started = time.perf_counter()
    torch.manual_seed(seed)
    resnet = torchvision.models.resnet18()
    backbone = torch.nn.Sequential(*list(resnet.children())[:-1], torch.nn.Flatten())
    head = SimCLRProjectionHead(512, 512, 128)
    model = torch.nn.Sequential(backbone, head)
    transform = SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)
    dataset = LightlyDataset(input_dir=str(train_dir), transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    criterion = NTXentLoss()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.06 * batch_size / 128, momentum=0.9, weight_decay=5e-4
    )
    peak_lr = optimizer.param_groups[0]["lr"]
    step, planned, probe_start, images = 0, None, None, 0
    done = False
    while not done:
        for (view0, view1), _, _ in loader:
            if planned is not None:
                progress = min(step / planned, 1.0)
                optimizer.param_groups[0]["lr"] = peak_lr * 0.5 * (1 + math.cos(math.pi * progress))
            loss = criterion(model(view0), model(view1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            images += view0.shape[0]
            if step == 2:
                probe_start = time.perf_counter()
            elif step == 5 and planned is None:
                per_step = (time.perf_counter() - probe_start) / 3
                remaining = budget_s - (time.perf_counter() - started)
                planned = step + max(1, int(remaining * 0.95 / per_step))
            if (
                planned is not None and step >= planned
            ) or time.perf_counter() - started >= budget_s:
                done = True
                break
    seconds = time.perf_counter() - started
    return backbone.eval(), {
        "steps": step,
        "images_seen": images,
        "train_s": round(seconds, 1),
        "train_images_per_s": round(images / seconds, 1),
        "final_loss": round(float(loss), 4),
    }


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


def load_run(run: Path) -> tuple[TrainConfig, torch.nn.Module, dict]:
    """A finished run's config, final backbone and training stats (from metrics.csv)."""
    import csv

    from contrastive.backbones import build_backbone
    from contrastive.training.config import load_config_file

    config = TrainConfig.from_dict(load_config_file(run / "config.yaml"))
    backbone, _ = build_backbone(config.backbone)
    backbone.load_state_dict(torch.load(run / "backbone.pt", map_location="cpu"))
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    logged = max(int(r["step"]) for r in rows if r.get("step")) + 1
    steps = max(config.max_steps or 0, logged)  # metrics are logged every 50 steps
    # config.yaml is rewritten when a time budget is re-planned; Lightning writes
    # hparams.yaml once, when fitting starts (after the step probe: a slight undercount).
    start_marker = run / "hparams.yaml" if (run / "hparams.yaml").exists() else run / "config.yaml"
    seconds = (run / "backbone.pt").stat().st_mtime - start_marker.stat().st_mtime
    images = steps * config.batch_size
    return (
        config,
        backbone.eval(),
        {
            "steps": steps,
            "images_seen": images,
            "train_s": round(seconds, 1),
            "train_images_per_s": round(images / seconds, 1),
            "evaluated_later": True,
        },
    )


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
    row["peak_mib"] = round(peak_memory_mib())
    row["load_end"] = round(os.getloadavg()[0], 2)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as file:
        file.write(json.dumps(row) + "\n")
    write_markdown(results, results.with_suffix(".md"))
    print(json.dumps({k: v for k, v in row.items() if k not in ("config", "machine")}))


def budget_seconds(text: str) -> float:
    from contrastive.training.budget import parse_duration

    return parse_duration(text)


if __name__ == "__main__":
    main()
