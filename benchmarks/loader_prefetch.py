"""Images/s of the decoded-cache loader with and without its prefetch thread (issue 18).

Two numbers per image size: the data path alone (read the next batch, nothing else) and
the data path beside a training step that keeps the host waiting for ``--step-ms`` (what a
GPU step looks like from the host; ``time.sleep`` releases the GIL as a CUDA wait does).
Without prefetch a batch costs read + step; with it, max(read, step).

Usage: python benchmarks/loader_prefetch.py [--images 2048] [--sizes 32 128] [--step-ms 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from contrastive.data.cache import CachedImageLoader, load_or_build_cache
from contrastive.data.cifar10 import ensure_cifar10
from contrastive.data.folder import list_images


def images_per_second(loader: CachedImageLoader, step_seconds: float, epochs: int) -> float:
    """Images delivered per second over ``epochs`` epochs (the first batch not timed)."""
    images, started = 0, None
    for _ in range(epochs):
        for batch, _ in loader:
            if started is None:
                started = time.perf_counter()
            else:
                images += batch.shape[0]
            if step_seconds:
                time.sleep(step_seconds)
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    paths = list_images(ensure_cifar10() / "train")[: args.images]
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            cache = load_or_build_cache(paths, size, Path(folder), workers=2)
            for step_ms in (0.0, args.step_ms):
                rates = {
                    prefetch: images_per_second(
                        CachedImageLoader(cache, args.batch_size, prefetch=prefetch),
                        step_ms / 1000,
                        args.epochs,
                    )
                    for prefetch in (False, True)
                }
                print(
                    f"{size:>4} px, step {step_ms:>4.0f} ms: {rates[False]:>9,.0f} img/s plain, "
                    f"{rates[True]:>9,.0f} img/s prefetched"
                )


if __name__ == "__main__":
    main()
