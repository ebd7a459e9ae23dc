"""The cache loader's prefetch thread: the same batches, in the same order, and no thread
left behind when the caller stops early."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive.data.cache import CachedImageLoader, load_or_build_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("prefetch")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(37):
        path = root / f"{index:02d}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return load_or_build_cache(paths, 16, root / "cache", workers=0)


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cache-prefetch")]


@pytest.mark.parametrize("drop_last", [True, False])
def test_prefetching_yields_the_batches_of_the_plain_loader(cache, drop_last: bool) -> None:
    def epochs(prefetch: bool) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        loader = CachedImageLoader(
            cache, batch_size=5, drop_last=drop_last, seed=4, prefetch=prefetch
        )
        return [list(loader) for _ in range(2)]

    plain, prefetched = epochs(prefetch=False), epochs(prefetch=True)
    assert [len(epoch) for epoch in prefetched] == [len(epoch) for epoch in plain]
    for plain_epoch, prefetched_epoch in zip(plain, prefetched):
        for (images, indices), (images_ahead, indices_ahead) in zip(plain_epoch, prefetched_epoch):
            assert torch.equal(images, images_ahead) and torch.equal(indices, indices_ahead)
    assert not prefetch_threads()


def test_stopping_early_ends_the_prefetch_thread(cache) -> None:
    loader = CachedImageLoader(cache, batch_size=4, seed=0, prefetch=True)
    batches = iter(loader)
    next(batches)
    next(batches)
    batches.close()  # what a for loop left by break or an exception does

    assert not prefetch_threads()
    assert len(list(loader)) == len(loader)  # the next epoch starts afresh
