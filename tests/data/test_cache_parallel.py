"""First-run decoding on every core gives the one-process cache, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import contrastive.data.cache as cache_module
from contrastive.data.cache import load_or_build_cache
from contrastive.hardware import usable_cores


@pytest.fixture
def mixed_folder(tmp_path: Path) -> tuple[list[Path], list[int]]:
    """40 images of different sizes with unreadable files first, in the middle and last.

    Returns:
        The paths and the indices of the unreadable ones.
    """
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    root.mkdir()
    paths, broken = [], [0, 17, 18, 39]
    for index in range(40):
        path = root / f"{index:02d}.png"
        if index in broken:
            path.write_bytes(b"not an image")
        else:
            height, width = 20 + index, 60 - index
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths, broken


@pytest.fixture
def small_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool even for a few files, in chunks of 3, so chunks finish out of order."""
    monkeypatch.setattr(cache_module, "_MIN_FILES_FOR_POOL", 0)
    monkeypatch.setattr(cache_module, "_POOL_CHUNK", 3)


@pytest.mark.filterwarnings("ignore:skipping unreadable image")
@pytest.mark.parametrize("workers", [2, 3, None])
def test_pool_gives_the_one_process_cache(
    mixed_folder: tuple[list[Path], list[int]],
    small_pool: None,
    tmp_path: Path,
    workers: int | None,
) -> None:
    paths, broken = mixed_folder
    serial = load_or_build_cache(paths, 24, tmp_path / "serial", workers=1)

    pooled = load_or_build_cache(paths, 24, tmp_path / f"pool{workers}", workers=workers)

    assert pooled.data_path.read_bytes() == serial.data_path.read_bytes()
    assert pooled.data_path.stat().st_size == (40 - len(broken)) * 3 * 24 * 24
    np.testing.assert_array_equal(pooled.valid, np.setdiff1d(np.arange(40), broken))
    assert pooled.skipped == [paths[i] for i in broken]
    # Row r is the image of file valid[r]: the compaction kept each row with its file.
    row = list(pooled.valid).index(20)
    expected = cache_module.square_uint8(Image.open(paths[20]).convert("RGB"), 24)
    np.testing.assert_array_equal(pooled.images[row], expected)


def test_skipped_files_are_warned_in_file_order(
    mixed_folder: tuple[list[Path], list[int]], small_pool: None, tmp_path: Path
) -> None:
    paths, broken = mixed_folder

    with pytest.warns(UserWarning) as warned:
        load_or_build_cache(paths, 24, tmp_path / "cache", workers=2)

    assert [str(w.message).split(":")[0] for w in warned] == [
        f"skipping unreadable image {paths[i]}" for i in broken
    ]


def test_default_uses_every_usable_core(
    mixed_folder: tuple[list[Path], list[int]],
    small_pool: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pools: list[int] = []
    context = cache_module.multiprocessing.get_context

    def recording_context(method: str):  # noqa: ANN202 - a multiprocessing context
        real = context(method)

        class Recording:
            def Pool(self, processes: int, **kwargs: object):  # noqa: N802, ANN202
                pools.append(processes)
                return real.Pool(processes, **kwargs)

        return Recording()

    monkeypatch.setattr(cache_module, "usable_cores", lambda: 3)
    monkeypatch.setattr(cache_module.multiprocessing, "get_context", recording_context)

    with pytest.warns(UserWarning):
        load_or_build_cache(mixed_folder[0], 24, tmp_path / "cache")

    assert pools == [3]


def test_usable_cores_follows_the_affinity_mask() -> None:
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity mask on this platform")
    assert usable_cores() == len(os.sched_getaffinity(0)) >= 1
