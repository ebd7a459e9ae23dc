"""Views per second: batched on-device views vs the per-image DataLoader pipeline.

Run from the repository root::

    python benchmarks/views_speed.py --images 4096 --seconds 3

The per-image pipeline is :class:`~contrastive.views.per_image.MultiView` over
:class:`~contrastive.data.folder.ImageDataset` in a DataLoader (decode + PIL views per
image); the batched one is :class:`~contrastive.views.batched.BatchedViews` on uint8
batches from :class:`~contrastive.data.cache.CachedImageLoader`. Numbers are wall-clock
throughput of a short run, so they vary with machine load.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from contrastive.data.cache import CachedImageLoader, DecodedCache, load_or_build_cache
from contrastive.data.folder import ImageDataset, list_images
from contrastive.views.batched import BatchedViews
from contrastive.views.config import ViewConfig, view_preset
from contrastive.views.per_image import MultiView


def _views_per_second(batches: Iterable, make_views, seconds: float, warmup: int = 2) -> float:
    """Runs ``make_views`` over batches (cycling) for about ``seconds``; returns views/s."""
    produced, started, iterator, done = 0, None, iter(batches), 0
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(batches)
            batch = next(iterator)
        views = make_views(batch)
        done += 1
        if done == warmup:
            started = time.perf_counter()
        elif done > warmup:
            produced += sum(v.shape[0] for v in views)
            if time.perf_counter() - started >= seconds:
                return produced / (time.perf_counter() - started)


def batched_views_per_second(
    cache: DecodedCache,
    config: ViewConfig,
    batch_size: int = 256,
    dtype: torch.dtype = torch.float32,
    seconds: float = 3.0,
    device: str = "cpu",
) -> float:
    """Views/s of cache loading + :class:`BatchedViews` (2 views) on ``device``."""
    views = BatchedViews(config, num_views=2, dtype=dtype).to(device)
    loader = CachedImageLoader(cache, batch_size, shuffle=True, drop_last=True)

    def make_views(batch: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        result = views(batch[0].to(device, non_blocking=True))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return result

    return _views_per_second(loader, make_views, seconds)


def per_image_views_per_second(
    paths: Sequence[Path],
    config: ViewConfig,
    batch_size: int = 256,
    workers: int = 2,
    seconds: float = 3.0,
) -> float:
    """Views/s of the per-image pipeline (decode + MultiView in DataLoader workers)."""
    dataset = ImageDataset(paths, transform=MultiView(config, num_views=2))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    return _views_per_second(loader, lambda batch: batch[0], seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.expanduser("~/.cache/contrastive/cifar10/train"))
    parser.add_argument("--images", type=int, default=4096, help="images used (first N)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--workers", type=int, default=2, help="per-image DataLoader workers")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="cifar")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = view_preset(args.preset)
    paths = list_images(args.root)[: args.images]
    cache = load_or_build_cache(paths, size=32 if args.preset == "cifar" else config.input_size)
    print(
        f"{len(paths)} images, batch {args.batch_size}, preset {args.preset}, "
        f"{torch.get_num_threads()} torch threads"
    )
    for dtype in (torch.float32, torch.bfloat16):
        rate = batched_views_per_second(
            cache, config, args.batch_size, dtype, args.seconds, args.device
        )
        print(f"BatchedViews {str(dtype):15s} on {args.device}: {rate:9.0f} views/s")
    rate = per_image_views_per_second(paths, config, args.batch_size, args.workers, args.seconds)
    print(f"per-image MultiView, {args.workers} workers:   {rate:9.0f} views/s")


if __name__ == "__main__":
    main()
