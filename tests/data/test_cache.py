"""Decoded image cache: contents, reuse, rebuilds, skipped files and the batch loader."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
from PIL import Image

import contrastive.data.cache as cache_module
from contrastive.data.cache import (
    UNKNOWN_DECODE_FAILURE,
    CachedImageLoader,
    ToSquareUint8,
    is_cached,
    load_or_build_cache,
    square_uint8,
)
from contrastive.data.folder import ImageDataset, list_images, load_rgb
from contrastive.errors import ContrastiveError


@pytest.fixture
def image_folder(tmp_path: Path, cifar10_small: dict[str, Path]) -> Path:
    """24 small-set 32 px JPEGs, a wide RGBA PNG, a grayscale PNG and one broken file."""
    root = tmp_path / "images"
    root.mkdir()
    cifar = list_images(cifar10_small["train"])[::12][:24]
    for number, path in enumerate(cifar):
        shutil.copyfile(path, root / f"cifar_{number:02d}.jpg")
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (40, 90, 4), dtype=np.uint8)
    Image.fromarray(wide, mode="RGBA").save(root / "wide_rgba.png")
    gray = rng.integers(0, 256, (50, 37), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(root / "tall_gray.png")
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    return root


def _build(paths: list[Path], directory: Path, **kwargs: object):
    with pytest.warns(UserWarning, match="broken.jpg"):
        return load_or_build_cache(paths, 32, directory, workers=0, **kwargs)


def test_rows_equal_load_rgb_plus_resize(image_folder: Path, tmp_path: Path) -> None:
    paths = list_images(image_folder)
    cache = _build(paths, tmp_path / "cache")
    reference = T.Compose([T.Resize(32, antialias=True), T.CenterCrop(32)])
    assert cache.images.shape == (len(paths) - 1, 3, 32, 32)
    assert cache.images.dtype == np.uint8
    for row, file_index in enumerate(cache.valid):
        image = load_rgb(paths[file_index])
        expected = np.asarray(reference(image)).transpose(2, 0, 1)
        np.testing.assert_array_equal(cache.images[row], expected)
        if image.size == (32, 32):
            # 32 px images (the small set) are stored natively, pixel for pixel.
            np.testing.assert_array_equal(cache.images[row], np.asarray(image).transpose(2, 0, 1))


def test_shorter_side_then_center_crop() -> None:
    # 80 x 40: red | blue | green stripes of 20, 40, 20 columns; the center square is blue.
    stripes = np.zeros((40, 80, 3), dtype=np.uint8)
    stripes[:, :20, 0] = 255
    stripes[:, 20:60, 2] = 255
    stripes[:, 60:, 1] = 255
    square = square_uint8(Image.fromarray(stripes), 32)
    assert square.shape == (3, 32, 32)
    interior = square[:, :, 1:-1]
    assert (interior[2] == 255).all() and (interior[:2] == 0).all()


def test_bad_file_skipped_and_labels_stay_aligned(image_folder: Path, tmp_path: Path) -> None:
    paths = list_images(image_folder)
    broken = paths.index(image_folder / "broken.jpg")
    cache = _build(paths, tmp_path / "cache")
    assert cache.skipped == [paths[broken]]
    assert broken not in cache.valid
    assert list(cache.valid) == [i for i in range(len(paths)) if i != broken]
    with pytest.warns(UserWarning, match="broken.jpg"):
        reused = load_or_build_cache(paths, 32, tmp_path / "cache", workers=0)
    np.testing.assert_array_equal(reused.valid, cache.valid)
    assert reused.skipped == cache.skipped
    # PIL's reason is kept with the cache, so a reused cache still says why.
    (reason,) = cache.skip_reasons.values()
    assert reason.startswith("UnidentifiedImageError: cannot identify image file")
    assert reused.skip_reasons == cache.skip_reasons


def test_a_cache_without_kept_reasons_still_loads(image_folder: Path, tmp_path: Path) -> None:
    # Caches written before reasons were kept (same CACHE_VERSION) are reused, not rebuilt.
    paths = list_images(image_folder)
    cache = _build(paths, tmp_path / "cache")
    meta_path = cache.data_path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    del meta["reasons"]
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="broken.jpg"):
        reused = load_or_build_cache(paths, 32, tmp_path / "cache", workers=0)
    assert reused.data_path == cache.data_path
    assert reused.skip_reasons == {image_folder / "broken.jpg": UNKNOWN_DECODE_FAILURE}
    # A damaged record is rebuilt, not a traceback.
    meta["reasons"] = ["not", "a", "mapping"]
    meta_path.write_text(json.dumps(meta))
    rebuilt = _build(paths, tmp_path / "cache")
    assert rebuilt.skipped == [image_folder / "broken.jpg"]
    assert rebuilt.skip_reasons != reused.skip_reasons


def test_reuse_does_not_decode(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = list_images(image_folder)
    first = _build(paths, tmp_path / "cache")
    modified = first.data_path.stat().st_mtime_ns

    def must_not_decode(task: object) -> None:
        raise AssertionError("the cache was decoded again")

    monkeypatch.setattr(cache_module, "_decode", must_not_decode)
    with pytest.warns(UserWarning, match="broken.jpg"):
        second = load_or_build_cache(paths, 32, tmp_path / "cache", workers=0)
    assert second.data_path == first.data_path
    assert second.data_path.stat().st_mtime_ns == modified
    np.testing.assert_array_equal(second.images, first.images)


def test_rebuild_after_a_file_changes(image_folder: Path, tmp_path: Path) -> None:
    paths = list_images(image_folder)
    first = _build(paths, tmp_path / "cache")
    old_rows = np.array(first.images)
    changed = image_folder / "cifar_00.jpg"
    Image.new("RGB", (32, 32), (10, 200, 30)).save(changed, quality=100)
    later = time.time() + 10
    os.utime(changed, (later, later))
    second = _build(paths, tmp_path / "cache")
    assert second.data_path != first.data_path
    assert not first.data_path.exists(), "the stale cache of the same file list is removed"
    row = int(np.flatnonzero(second.valid == paths.index(changed))[0])
    assert abs(second.images[row].astype(int) - np.array([10, 200, 30])[:, None, None]).max() < 3
    np.testing.assert_array_equal(
        np.delete(second.images, row, axis=0), np.delete(old_rows, row, axis=0)
    )


def test_is_cached_tells_a_finished_cache_of_exactly_these_files(
    image_folder: Path, tmp_path: Path
) -> None:
    paths = list_images(image_folder)
    directory = tmp_path / "cache"
    assert not is_cached(paths, 32, directory)
    _build(paths, directory)
    assert is_cached(paths, 32, directory)
    assert not is_cached(paths, 24, directory)  # another size
    assert not is_cached(paths[1:], 32, directory)  # another list
    later = time.time() + 10
    os.utime(paths[0], (later, later))
    assert not is_cached(paths, 32, directory)  # a file changed


@pytest.mark.filterwarnings("ignore:skipping unreadable image")
def test_killed_build_leaves_nothing_trusted(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = list_images(image_folder)
    decode, calls = cache_module._decode, []

    def dies_midway(task: tuple[int, str, int]) -> object:
        calls.append(task)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return decode(task)

    monkeypatch.setattr(cache_module, "_decode", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        load_or_build_cache(paths, 32, tmp_path / "cache", workers=0)
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(cache_module, "_decode", decode)
    cache = _build(paths, tmp_path / "cache")
    assert len(cache) == len(paths) - 1


def test_metadata_without_matching_data_is_rebuilt(image_folder: Path, tmp_path: Path) -> None:
    paths = list_images(image_folder)
    first = _build(paths, tmp_path / "cache")
    expected = np.array(first.images)
    with open(first.data_path, "r+b") as data:
        data.truncate(100)
    second = _build(paths, tmp_path / "cache")
    np.testing.assert_array_equal(second.images, expected)


def test_worker_pool_gives_the_same_cache(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = list_images(image_folder)
    serial = _build(paths, tmp_path / "serial")
    monkeypatch.setattr(cache_module, "_MIN_FILES_FOR_POOL", 0)
    monkeypatch.setattr(cache_module, "_POOL_CHUNK", 4)
    with pytest.warns(UserWarning, match="broken.jpg"):
        pooled = load_or_build_cache(paths, 32, tmp_path / "pooled", workers=2)
    np.testing.assert_array_equal(pooled.images, serial.images)
    np.testing.assert_array_equal(pooled.valid, serial.valid)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ContrastiveError, match="empty"):
        load_or_build_cache([], 32, tmp_path)
    with pytest.raises(ContrastiveError, match="size"):
        load_or_build_cache([tmp_path / "a.jpg"], 0, tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    with (
        pytest.warns(UserWarning, match="broken.png"),
        pytest.raises(ContrastiveError, match="none of the 1 images"),
    ):
        load_or_build_cache([broken], 32, tmp_path / "cache", workers=0)
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.fixture
def cifar_cache(cifar10_small: dict[str, Path], tmp_path: Path):
    return load_or_build_cache(list_images(cifar10_small["test"]), 32, tmp_path, workers=0)


def test_loader_covers_each_row_once_per_epoch(cifar_cache) -> None:
    loader = CachedImageLoader(cifar_cache, batch_size=32, shuffle=True, drop_last=False, seed=3)
    assert len(loader) == 4  # 100 images: 3 full batches and 4 leftovers
    seen = []
    for images, file_indices in loader:
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
        assert torch.all(file_indices[1:] > file_indices[:-1]), "rows are sorted per batch"
        rows = np.searchsorted(cifar_cache.valid, file_indices.numpy())
        np.testing.assert_array_equal(images.numpy(), cifar_cache.images[rows])
        seen.extend(file_indices.tolist())
    assert sorted(seen) == list(cifar_cache.valid)
    assert [len(batch[0]) for batch in loader] == [32, 32, 32, 4]


def test_loader_shuffles_per_epoch_reproducibly(cifar_cache) -> None:
    loader = CachedImageLoader(cifar_cache, batch_size=10, drop_last=True, seed=0)
    assert len(loader) == 10
    first = [indices.tolist() for _, indices in loader]
    second = [indices.tolist() for _, indices in loader]
    assert first != second, "each iteration is a new epoch"
    loader.set_epoch(0)
    assert [indices.tolist() for _, indices in loader] == first
    in_order = CachedImageLoader(cifar_cache, batch_size=10, shuffle=False)
    assert next(iter(in_order))[1].tolist() == list(range(10))


def test_loader_shards_are_disjoint(cifar_cache) -> None:
    shards = [
        CachedImageLoader(cifar_cache, batch_size=7, seed=1, rank=rank, world_size=3)
        for rank in range(3)
    ]
    rows = [shard.epoch_rows(0) for shard in shards]
    assert [len(r) for r in rows] == [33, 33, 33]
    assert len(set(torch.cat(rows).tolist())) == 99
    with pytest.raises(ContrastiveError, match="rank"):
        CachedImageLoader(cifar_cache, batch_size=7, rank=3, world_size=3)


def test_cache_pickles_cheaply_for_worker_processes(cifar_cache) -> None:
    # DDP and DataLoader workers receive the cache by pickling: the memmap must not travel.
    assert len(pickle.dumps(cifar_cache)) < cifar_cache.images.nbytes / 10
    restored = pickle.loads(pickle.dumps(cifar_cache))
    np.testing.assert_array_equal(restored.images[5], cifar_cache.images[5])
    assert restored.images[5].dtype == np.uint8 and restored.images[5].shape == (3, 32, 32)


def test_uncached_path_gives_the_same_images(cifar_cache) -> None:
    dataset = ImageDataset(cifar_cache.source_paths, transform=ToSquareUint8(32))
    image, _label, index = dataset[7]
    assert image.dtype == torch.uint8
    np.testing.assert_array_equal(image.numpy(), cifar_cache.images[7])
    assert index == 7


def test_large_jpegs_decode_reduced_but_store_the_same_square(tmp_path: Path) -> None:
    from PIL import Image

    from contrastive.data.cache import square_uint8
    from contrastive.data.folder import load_rgb

    # A smooth 800x600 photo-like gradient with some texture, saved as JPEG.
    y, x = np.mgrid[0:600, 0:800]
    pixels = np.stack([x * 255 // 800, y * 255 // 600, (x + y) % 256], axis=-1).astype(np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    reduced = load_rgb(path, min_side=64)
    assert 64 <= min(reduced.size) < 600  # decoded at 1/2..1/8 scale, never below 64 px
    assert load_rgb(path).size == (800, 600)
    full, small = square_uint8(load_rgb(path), 64), square_uint8(reduced, 64)
    assert np.abs(full.astype(int) - small.astype(int)).mean() < 4


def test_cache_name_takes_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    latin1 = tmp_path / os.fsdecode(b"caf\xe9.png")  # Python holds the byte as a surrogate
    name = cache_module.cache_name([latin1], 32)
    assert name.endswith("-32px-" + name.rsplit("-", 1)[1])
    assert name != cache_module.cache_name([tmp_path / "cafe.png"], 32)


def test_the_cache_name_changes_with_the_decoding_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cache built under the default pixel limit had left a panorama out; reused after
    # CONTRASTIVE_MAX_IMAGE_PIXELS=0 (its own warning's advice), it still left it out.
    before = cache_module.cache_name([tmp_path / "pano.jpg"], 32)
    monkeypatch.setenv("CONTRASTIVE_MAX_IMAGE_PIXELS", "0")
    unlimited = cache_module.cache_name([tmp_path / "pano.jpg"], 32)
    monkeypatch.setenv("CONTRASTIVE_BIT_DEPTH", "12")
    twelve_bits = cache_module.cache_name([tmp_path / "pano.jpg"], 32)
    assert len({before, unlimited, twelve_bits}) == 3
    # The same list of files: the stale cache is still found (and replaced) by its prefix.
    assert before.split("-")[0] == unlimited.split("-")[0] == twelve_bits.split("-")[0]


def test_a_same_size_rewrite_with_its_mtime_restored_rebuilds(tmp_path: Path) -> None:
    # cp -p, rsync -a, touch -r or a coarse-mtime file system leave size and mtime as they
    # were; only the inode change time tells.
    root = tmp_path / "images"
    root.mkdir()
    noise = np.random.default_rng(0).integers(1, 256, (4, 8, 8, 3), dtype=np.uint8)
    paths = [root / f"{number}.bmp" for number in range(4)]
    for path, pixels in zip(paths, noise, strict=True):
        Image.fromarray(pixels).save(path)
    first = load_or_build_cache(paths, 8, tmp_path / "cache", workers=0)
    time.sleep(0.05)  # past the kernel's coarse timestamp clock (a few ms)
    for path in paths:
        before = path.stat()
        Image.new("RGB", (8, 8)).save(path)  # black, the same BMP size
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = path.stat()
        assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    second = load_or_build_cache(paths, 8, tmp_path / "cache", workers=0)

    assert second.data_path != first.data_path
    assert not np.asarray(second.images).any()


def test_thin_images_resample_only_the_kept_square(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 1 x 20000 line at 16 px: torchvision's resize-then-crop makes 16 x 320000 first.
    line = np.random.default_rng(0).integers(0, 256, (20000, 1, 3), dtype=np.uint8)
    image = Image.fromarray(line)
    reference = np.asarray(T.Compose([T.Resize(16, antialias=True), T.CenterCrop(16)])(image))
    resized = []
    original_resize = Image.Image.resize

    def recording_resize(self: Image.Image, size: tuple[int, int], *args, **kwargs):
        resized.append(size)
        return original_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", recording_resize)

    square = square_uint8(image, 16)

    assert resized == [(16, 16)]
    # PIL takes the crop box in single precision: at most a grey level off torchvision.
    assert np.abs(square.transpose(1, 2, 0).astype(int) - reference).max() <= 1


def test_a_cache_folder_that_cannot_be_made_names_the_ways_around_it(
    image_folder: Path, tmp_path: Path
) -> None:
    # A file where a folder should be fails as a read-only home does, even for root.
    (tmp_path / "home").write_text("")
    paths = list_images(image_folder)
    with pytest.raises(ContrastiveError) as error:
        load_or_build_cache(paths, 8, directory=tmp_path / "home" / "decoded")
    message = str(error.value)
    assert message.startswith(f"cannot create the decoded-image cache folder {tmp_path}/home/")
    assert "--cache-dir (or the CONTRASTIVE_CACHE environment variable)" in message
    assert message.endswith("or train with --no-cache")
