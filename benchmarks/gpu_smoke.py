"""GPU smoke test: one short CIFAR-10 run, with the numbers that show the GPU path works and is fed.

Run from the repository root when a GPU is at hand::

    python benchmarks/gpu_smoke.py                          # CIFAR-10 from ../shared, 60 s
    python benchmarks/gpu_smoke.py --data DIR               # DIR/train, DIR/test class folders
    python benchmarks/gpu_smoke.py --time-budget 10s --per-class 10   # a quick CPU check

It trains SimCLR with ``--time-budget`` through the Python API (``train()``, the same path
as ``contrastive train``) and prints:

* training steps/s and images/s: Lightning's loop (``img_per_s`` of ``metrics.csv``, the
  second half of the run) and a bare loop of the same module's steps on the same batches;
* peak GPU memory (allocated and reserved) and the fp32 matmul precision (TF32 on CUDA);
* host-device syncs in the bare step (``torch.cuda.set_sync_debug_mode("warn")``);
* kNN top-1 (k=200) of the trained backbone on the test split, embedded on the device.

Without a CUDA GPU it says so, trains on the CPU with the same code and skips the GPU-only
numbers. With the defaults it takes under 3 minutes on one H200 (CIFAR-10 extraction on
first use included); ``--out`` gets ``summary.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from contrastive.backbone_config import BackboneConfig
from contrastive.data.cifar10 import ensure_cifar10, subset
from contrastive.data.folder import ImageFolder
from contrastive.embeddings import loader_workers
from contrastive.training.config import TrainConfig
from contrastive.training.data import batched_loader
from contrastive.training.knn_monitor import KNNMonitor
from contrastive.training.module import ContrastiveModule
from contrastive.training.tensor_float32 import CUDA_MATMUL_PRECISION
from contrastive.training.train import train
from contrastive.views.config import view_preset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        help="folder with train/ and test/ class folders (default: a CIFAR-10 subset "
        "extracted from the archives of --archives)",
    )
    parser.add_argument(
        "--archives", type=Path, help="CIFAR-10 archives folder (default ../shared/data/cifar10)"
    )
    parser.add_argument(
        "--per-class", type=int, default=1000, help="CIFAR-10 train images per class"
    )
    parser.add_argument("--time-budget", default="60s", help="training budget (default 60s)")
    parser.add_argument(
        "--batch-size", type=int, help="per-step batch (default 512 on a GPU, 32 on the CPU)"
    )
    parser.add_argument(
        "--backbone",
        help="default: resnet18 with the small-image stem on a GPU, resnet18_quarter on CPU",
    )
    parser.add_argument("--bare-steps", type=int, default=20, help="steps of the bare loop")
    parser.add_argument(
        "--out", type=Path, default=Path("/tmp/gpu_smoke"), help="run, subsets and summary"
    )
    return parser.parse_args(argv)


def splits(args: argparse.Namespace) -> tuple[Path, Path]:
    """The train and test class folders: ``--data``'s, or CIFAR-10 subsets under ``--out``."""
    if args.data is not None:
        return args.data / "train", args.data / "test"
    root = ensure_cifar10(args.archives)
    train_dir, test_dir = args.out / "data" / "train", args.out / "data" / "test"
    if not train_dir.exists():
        subset(root / "train", train_dir, args.per_class)
        subset(root / "test", test_dir, max(10, args.per_class // 5))
    return train_dir, test_dir


def loop_rate(run_dir: Path, batch_size: int) -> tuple[float, float]:
    """Lightning's images/s and steps/s: median ``img_per_s`` of the run's second half."""
    with (run_dir / "metrics.csv").open() as metrics:
        rates = [float(row["img_per_s"]) for row in csv.DictReader(metrics) if row.get("img_per_s")]
    if not rates:
        return float("nan"), float("nan")
    images = statistics.median(rates[len(rates) // 2 :])
    return images, images / batch_size


def bare_loop(
    module: ContrastiveModule, config: TrainConfig, device: torch.device, steps: int, bf16: bool
) -> tuple[float, list[str]]:
    """Steps/s of the module's step without Lightning, and the syncs one step makes.

    The same batches (the decoded cache's loader, cycled), views, loss, backward and an SGD
    step, in bf16 autocast if training used it and with TF32 on CUDA as training has it.
    """
    paths = ImageFolder.scan(config.data).paths
    loader, _ = batched_loader(paths, config)
    module = module.to(device).train()
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1e-6)
    on_gpu = device.type == "cuda"
    previous = torch.get_float32_matmul_precision()
    if on_gpu:
        torch.set_float32_matmul_precision(CUDA_MATMUL_PRECISION)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        images, indices = (t.to(device, non_blocking=True) for t in batch)
        views, _ = module.prepare_batch((images, indices))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = module.method.training_loss(views, progress=0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def cycled() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield from loader

    batches = cycled()
    syncs: list[str] = []
    try:
        for _ in range(3):  # warm-up (cuDNN autotuning, allocator)
            step(next(batches))
        if on_gpu:
            torch.cuda.synchronize(device)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    step(next(batches))
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            syncs = sorted({str(w.message).splitlines()[0] for w in caught})
        started = time.perf_counter()
        for _ in range(steps):
            step(next(batches))
        if on_gpu:
            torch.cuda.synchronize(device)
        return steps / (time.perf_counter() - started), syncs
    finally:
        torch.set_float32_matmul_precision(previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    if on_gpu:
        props = torch.cuda.get_device_properties(0)
        print(
            f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
            f"compute capability {props.major}.{props.minor}"
        )
    else:
        print("no CUDA GPU: training on the CPU, GPU-only numbers skipped")
    train_dir, test_dir = splits(args)
    batch_size = args.batch_size or (512 if on_gpu else 32)
    backbone = (
        BackboneConfig(args.backbone)
        if args.backbone
        else BackboneConfig("resnet18", small_image_stem=True)
        if on_gpu
        else BackboneConfig("resnet18_quarter")
    )
    run_dir = args.out / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    config = TrainConfig(
        data=str(train_dir),
        out=str(run_dir),
        views=view_preset("cifar"),
        backbone=backbone,
        batch_size=batch_size,
        accelerator="gpu" if on_gpu else "cpu",
        devices=1,
        time_budget=args.time_budget,
        cache_dir=str(args.out / "cache"),
        logger="csv",
    )
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - started
    steps = result.module.global_step
    summary: dict[str, object] = {
        "device": torch.cuda.get_device_name(0) if on_gpu else "cpu",
        "train_images": result.num_images,
        "batch_size": batch_size,
        "backbone": backbone.name,
        "time_budget": args.time_budget,
        "train_wall_s": round(wall, 1),
        "steps": steps,
    }
    images_per_s, steps_per_s = loop_rate(run_dir, batch_size)
    summary["loop_images_per_s"] = round(images_per_s, 1)
    summary["loop_steps_per_s"] = round(steps_per_s, 2)
    if on_gpu:
        summary["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        summary["peak_gpu_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    # The precision Lightning trained in (``--precision auto`` resolves per machine).
    try:
        precision = str(result.module.trainer.precision)
    except RuntimeError:  # no longer attached to its Trainer
        precision = "32-true"
    summary["precision"] = precision
    bare_rate, syncs = bare_loop(
        result.module, result.config, device, args.bare_steps, bf16=precision.startswith("bf16")
    )
    summary["bare_steps_per_s"] = round(bare_rate, 2)
    summary["bare_images_per_s"] = round(bare_rate * batch_size, 1)
    if on_gpu:
        summary["syncs_in_one_step"] = syncs
        summary["fp32_matmul_precision_in_training"] = CUDA_MATMUL_PRECISION
    started = time.perf_counter()
    monitor = KNNMonitor(
        train_dir,
        test_dir,
        result.config.views,
        k=200,
        batch_size=512,
        num_workers=loader_workers(None, 100),
    )
    summary["knn_top1"] = round(monitor.measure(result.backbone, device), 4)
    summary["embed_knn_s"] = round(time.perf_counter() - started, 1)
    for key, value in summary.items():
        print(f"{key:>34}: {value}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
