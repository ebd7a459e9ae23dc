"""Throughput against Lightly's usual pipeline, all in one process, on the CIFAR-10 folder.

Run from the repository root::

    python benchmarks/throughput.py                 # everything, ~5 min on 2 cores
    python benchmarks/throughput.py --compile       # also torch.compile of our step

Measures (each figure is the median of ``--rounds`` interleaved rounds, so the ratios
compare runs under the same machine load):

(a) views/s of the data path: decode-once cache + ``CachedImageLoader`` + ``BatchedViews``
    (fp32, bf16) vs Lightly's ``LightlyDataset`` + ``SimCLRTransform(input_size=32)`` in a
    DataLoader with 0 and 2 workers (each image gives 2 views).
(b) training images/s end to end (data + step), batch 256, torchvision resnet18 (ImageNet
    stem) + ``SimCLRProjectionHead(512, 512, 128)`` + ``NTXentLoss`` + SGD: Lightly's
    example step (``examples/pytorch/simclr.py``, fp32, fed by its DataLoader) vs ours
    (cache + batched views + bf16 autocast + channels-last; also fp32, and compiled).
(c) achieved FLOP/s of our step (``FlopCounterMode``, one step) as a fraction of a bf16
    4096x4096 matmul measured in the same run.
(d) peak resident memory of each part (this process + DataLoader workers, sampled).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import matmul_flops  # noqa: E402
from views_speed import batched_views_per_second  # noqa: E402

from contrastive.backbone_config import BackboneConfig  # noqa: E402
from contrastive.data.cache import CachedImageLoader, load_or_build_cache  # noqa: E402
from contrastive.data.cifar10 import ensure_cifar10  # noqa: E402
from contrastive.data.folder import list_images  # noqa: E402
from contrastive.methods.config import MethodConfig  # noqa: E402
from contrastive.training.config import TrainConfig  # noqa: E402
from contrastive.training.module import ContrastiveModule  # noqa: E402
from contrastive.views.batched import BatchedViews  # noqa: E402
from contrastive.views.config import view_preset  # noqa: E402


class PeakRSS:
    """Samples the resident memory of this process and its children every 20 ms."""

    def __enter__(self) -> PeakRSS:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                rss = me.memory_info().rss + sum(
                    c.memory_info().rss for c in me.children(recursive=True)
                )
            except psutil.Error:
                rss = 0
            self.peak = max(self.peak, rss)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> int:
        return round(self.peak / 2**20)


# ------------------------------------------------------------------------------ (a) views
def lightly_loader(train_dir: Path, workers: int, batch_size: int = 256):
    from lightly.data import LightlyDataset
    from lightly.transforms import SimCLRTransform

    dataset = LightlyDataset(input_dir=str(train_dir), transform=SimCLRTransform(input_size=32))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def lightly_views_per_second(loader, seconds: float) -> float:
    iterator, count = iter(loader), 0
    next(iterator)  # workers started, first batch (warm-up)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        (view0, view1), _, _ = next(iterator)
        count += view0.shape[0] + view1.shape[0]
    return count / (time.perf_counter() - started)


# ---------------------------------------------------------------------------- (b) training
def lightly_example_model():
    """``examples/pytorch/simclr.py``: resnet18 without fc, SimCLRProjectionHead(512,512,128)."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    resnet = torchvision.models.resnet18()
    backbone = torch.nn.Sequential(*list(resnet.children())[:-1])
    head = SimCLRProjectionHead(512, 512, 128)

    class SimCLR(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.projection_head = backbone, head

        def forward(self, x):
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

    model = SimCLR()
    return model, NTXentLoss(), torch.optim.SGD(model.parameters(), lr=0.06)


def lightly_steps_per_second(model, criterion, optimizer, loader, steps: int) -> float:
    iterator = iter(loader)
    for index in range(steps + 1):
        if index == 1:
            started = time.perf_counter()
        (x0, x1), _, _ = next(iterator)
        loss = criterion(model(x0), model(x1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return steps / (time.perf_counter() - started)


def our_module(precision: str, compile_backbone: bool = False) -> ContrastiveModule:
    config = TrainConfig(
        views=view_preset("cifar"),
        backbone=BackboneConfig("resnet18"),
        method=MethodConfig("simclr", projection_hidden_dim=512, projection_output_dim=128),
        batch_size=256,
        precision=precision,
        channels_last=True,
    )
    module = ContrastiveModule(config.to_dict(), view_maker=BatchedViews(config.views, num_views=2))
    if compile_backbone:
        module.method.backbone.compile()
    return module


class OurStep:
    """Our training step outside Lightning: views on device, autocast, SGD."""

    def __init__(self, module: ContrastiveModule, loader: CachedImageLoader, bf16: bool) -> None:
        self.module, self.loader, self.bf16 = module.train(), loader, bf16
        self.optimizer = torch.optim.SGD(module.method.parameters(), lr=0.06, momentum=0.9)
        self.iterator = iter(loader)

    def batch(self):
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)

    def __call__(self, batch=None) -> None:
        batch = self.module.prepare_batch(batch if batch is not None else self.batch())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.module.method.training_loss(batch[0], progress=0.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def steps_per_second(self, steps: int) -> float:
        self()
        started = time.perf_counter()
        for _ in range(steps):
            self()
        return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="per views measurement")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: default). On a shared, oversubscribed "
        "machine 1 thread avoids OpenMP spin-wait collapse",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load = os.getloadavg()[0]
    root = ensure_cifar10()
    train_dir = root / "train"
    cache = load_or_build_cache(list_images(train_dir), size=32)
    views = view_preset("cifar")
    print(
        f"{len(cache)} images, {torch.get_num_threads()} torch threads, "
        f"{os.cpu_count()} cores, load {load:.2f}",
        flush=True,
    )
    rates: dict[str, list[float]] = {}
    memory: dict[str, int] = {}

    def record(name: str, value: float, peak: PeakRSS) -> None:
        rates.setdefault(name, []).append(value)
        memory[name] = max(memory.get(name, 0), peak.mib)
        print(f"  {name:45s} {value:10.1f}  (peak {peak.mib} MiB)", flush=True)

    # (a) views/s
    loaders = {w: lightly_loader(train_dir, w) for w in (0, 2)}
    for round_ in range(args.rounds):
        print(f"(a) views/s, round {round_ + 1}", flush=True)
        for dtype, label in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            with PeakRSS() as peak:
                rate = batched_views_per_second(cache, views, 256, dtype, args.seconds)
            record(f"ours: cache + BatchedViews {label}", rate, peak)
        for workers, loader in loaders.items():
            with PeakRSS() as peak:
                rate = lightly_views_per_second(loader, args.seconds)
            record(f"Lightly DataLoader, {workers} workers", rate, peak)
    del loaders

    # (b) training images/s, end to end
    lightly = lightly_example_model()
    lightly_data = lightly_loader(train_dir, 2)
    ours = {
        "bf16": OurStep(our_module("bf16-mixed"), CachedImageLoader(cache, 256, True, True), True),
        "fp32": OurStep(our_module("32-true"), CachedImageLoader(cache, 256, True, True), False),
    }
    compiled, compile_s = None, None
    if args.compile:
        compiled = OurStep(
            our_module("bf16-mixed", compile_backbone=True),
            CachedImageLoader(cache, 256, True, True),
            True,
        )
        started = time.perf_counter()
        compiled()
        compiled()
        compile_s = time.perf_counter() - started
        print(f"torch.compile: first two steps {compile_s:.1f} s", flush=True)
    for round_ in range(args.rounds):
        print(f"(b) training images/s, round {round_ + 1}", flush=True)
        with PeakRSS() as peak:
            rate = 256 * lightly_steps_per_second(*lightly, lightly_data, args.steps)
        record("Lightly example step (fp32, 2 workers)", rate, peak)
        for label, step in ours.items():
            with PeakRSS() as peak:
                rate = 256 * step.steps_per_second(args.steps)
            record(f"ours ({label}, channels-last, batched views)", rate, peak)
        if compiled is not None:
            with PeakRSS() as peak:
                rate = 256 * compiled.steps_per_second(args.steps)
            record("ours (bf16, torch.compile backbone)", rate, peak)

    # (c) achieved FLOP/s
    step = ours["bf16"]
    batch = step.batch()
    with FlopCounterMode(display=False) as counter:
        step(batch)
    flops_per_step = counter.get_total_flops()
    peak_flops = matmul_flops()
    our_rate = statistics.median(rates["ours (bf16, channels-last, batched views)"])
    achieved = flops_per_step * our_rate / 256

    print("\n| measurement | median | rounds | peak RSS MiB |\n|---|---|---|---|")
    for name, values in rates.items():
        print(
            f"| {name} | {statistics.median(values):.1f} | "
            f"{', '.join(f'{v:.0f}' for v in values)} | {memory[name]} |"
        )
    lightly_views = statistics.median(rates["Lightly DataLoader, 2 workers"])
    lightly_views0 = statistics.median(rates["Lightly DataLoader, 0 workers"])
    for label in ("fp32", "bf16"):
        ours_views = statistics.median(rates[f"ours: cache + BatchedViews {label}"])
        print(
            f"data path {label}: {ours_views / lightly_views:.1f}x Lightly 2 workers, "
            f"{ours_views / lightly_views0:.1f}x 0 workers"
        )
    lightly_train = statistics.median(rates["Lightly example step (fp32, 2 workers)"])
    for name, values in rates.items():
        if name.startswith("ours ("):
            print(f"training {name}: {statistics.median(values) / lightly_train:.2f}x Lightly")
    if compile_s is not None:
        print(f"torch.compile time (first two steps): {compile_s:.1f} s")
    print(
        f"our bf16 step: {flops_per_step / 1e9:.1f} GFLOP per step of 256 images "
        f"(forward + backward, counted), {achieved / 1e9:.1f} GFLOP/s achieved; bf16 "
        f"4096^2 matmul {peak_flops / 1e9:.1f} GFLOP/s -> {100 * achieved / peak_flops:.1f}%"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
