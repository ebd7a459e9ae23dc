"""Decode once: images decoded, resized and stored as a uint8 memmap reused across runs.

The first pass decodes every file with :func:`~contrastive.data.folder.load_rgb`, resizes it
to ``size x size`` (shorter side to ``size``, then a center crop, see :func:`square_uint8`)
and writes it into a raw uint8 file of layout ``(N, 3, size, size)``, so a batch of rows is a
ready ``torch.uint8`` tensor. Later epochs, runs and embedding passes map the same file.

The cache is named after a hash of the file list, each file's size, modification time and
inode change time, and ``size``: changing, adding or removing a file gives a new name and a
rebuild, even where the modification time was restored (``cp -p``, ``rsync -a``). A build
writes to a temporary file renamed into place, and the JSON metadata is renamed last, so a
killed build never leaves a cache that is later trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from contrastive.cache_root import CACHE_ENV
from contrastive.data.cache_files import default_cache_dir, images_folder, mark_used, usage_hint
from contrastive.data.folder import DECODE_ERRORS, decoding_settings, describe_error, load_rgb
from contrastive.errors import ContrastiveError
from contrastive.files import atomic_path, write_text_atomic
from contrastive.hardware import usable_cores

log = logging.getLogger(__name__)

#: Bumped whenever the decoding or the file layout changes, so old caches are not reused.
CACHE_VERSION = 1

#: The reason given for a skipped file whose cache did not keep one.
UNKNOWN_DECODE_FAILURE = "failed to decode"
# Below this many files a worker pool costs more to start than it saves.
_MIN_FILES_FOR_POOL = 512
_POOL_CHUNK = 64
# Up to this many times the output's area, resize then crop as torchvision does (exact);
# beyond it (thin images), only the kept square is resampled (resize_center_crop).
_MAX_RESIZED_AREA = 4


def square_uint8(image: Image.Image, size: int) -> np.ndarray:
    """Resizes an RGB image to a ``size x size`` uint8 array.

    The rule is torchvision's ``Resize(size)`` then ``CenterCrop(size)``: the shorter side
    becomes ``size`` (bilinear with antialiasing, the longer side scaled proportionally and
    truncated), then the central square is kept. Images already ``size x size`` are stored
    unchanged. Only the square is resampled (see :func:`resize_center_crop`), so a
    1x50000 line costs what a square does, not a 64 x 3.2 million intermediate image.

    Args:
        image: An RGB ``PIL.Image``.
        size: Side of the output square, in pixels.

    Returns:
        uint8 array ``(3, size, size)``.
    """
    if image.size != (size, size):
        image = resize_center_crop(image, size, size)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def resize_center_crop(image: Image.Image, resize: int, crop: int) -> Image.Image:
    """``T.CenterCrop(crop)(T.Resize(resize)(image))`` on a PIL image, without its memory.

    torchvision resizes the whole image, then crops: a thin image (1 x 50000 at 64 px)
    becomes a 64 x 3.2 million intermediate (0.6 GB, 1.5 GB at peak) before 64 x 64 of it
    are kept. Where the resized image would exceed ``_MAX_RESIZED_AREA`` crops, PIL's
    ``resize(box=...)`` resamples only the kept square, at the same scale, drawing on the
    pixels around it for the filter as the full resize does. PIL takes the box in single
    precision, so that path may differ from torchvision by a grey level or two; every
    other image (aspect ratios up to about 4:1) gets torchvision's output exactly.

    Args:
        image: A ``PIL.Image``.
        resize: The shorter side after resizing (torchvision's ``Resize(int)``).
        crop: Side of the central square kept.

    Returns:
        The ``crop x crop`` image.
    """
    width, height = image.size
    # torchvision's output size: the short side becomes `resize`, the long one is
    # scaled and truncated (`_compute_resized_output_size`).
    if width <= height:
        new_width, new_height = resize, int(resize * height / width)
    else:
        new_width, new_height = int(resize * width / height), resize
    if new_width * new_height <= _MAX_RESIZED_AREA * crop * crop or crop > resize:
        return TF.center_crop(TF.resize(image, resize, antialias=True), [crop, crop])
    # torchvision's crop anchor (`_center_crop_compute_crop_anchor`), in resized pixels.
    top = int(round((new_height - crop) / 2.0))
    left = int(round((new_width - crop) / 2.0))
    scale_x, scale_y = width / new_width, height / new_height
    box = (left * scale_x, top * scale_y, (left + crop) * scale_x, (top + crop) * scale_y)
    return image.resize((crop, crop), Image.Resampling.BILINEAR, box=box)


class ToSquareUint8:
    """Picklable transform ``PIL.Image -> torch.uint8 (3, size, size)`` for ImageDataset.

    Gives the uncached path (decode every epoch in DataLoader workers) the same batches as
    the cache, so :class:`~contrastive.views.batched.BatchedViews` works with either.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(square_uint8(image, self.size)))


def _decode(task: tuple[int, str, int]) -> tuple[int, np.ndarray | str]:
    """Decodes one file: ``(index, array (3, S, S))`` or ``(index, error message)``."""
    index, path, size = task
    try:
        return index, square_uint8(load_rgb(path, min_side=size), size)
    except DECODE_ERRORS as error:
        return index, describe_error(error)


def _file_signature(path: Path) -> str:
    """The line a file adds to the content hash: path, size, mtime and ctime (one stat).

    Size and mtime alone miss a same-size rewrite whose mtime was restored (``cp -p``,
    ``rsync -a``, ``touch -r``, ``exiftool -P``) or fell within a coarse mtime. The inode
    change time cannot be set by users and moves on every rewrite, so it catches those.
    The inode number is left out: it adds nothing once ctime is there (a replaced file has
    a new ctime too), and network and FUSE mounts renumber inodes across mounts, which
    would rebuild unchanged caches.
    """
    try:
        stat = path.stat()
    except OSError:
        # A vanished file still gets a stable line; decoding it later fails and skips it.
        return f"{path}\t-1\t-1\t-1"
    return f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\t{stat.st_ctime_ns}"


def cache_name(paths: Sequence[Path], size: int) -> str:
    """The cache's file stem: ``<list hash>-<size>px-<content hash>``.

    The list hash covers only the paths, so a rebuild after files change can find and
    delete the stale cache of the same list; the content hash adds sizes, mtimes and
    ctimes (see :func:`_file_signature`) and the decoding settings
    (:func:`~contrastive.data.folder.decoding_settings`).
    """
    list_hash = hashlib.sha256()
    # The decoding settings too: after CONTRASTIVE_MAX_IMAGE_PIXELS=0 (the advice for a
    # panorama over the limit), a cache that had skipped it was reused, still without it.
    content_hash = hashlib.sha256(f"v{CACHE_VERSION}\n{size}\n{decoding_settings()}\n".encode())
    for path in paths:
        # surrogateescape: a file name that is not UTF-8 (Python holds its bytes as
        # surrogates) hashes as its own bytes instead of failing.
        list_hash.update(f"{path}\n".encode(errors="surrogateescape"))
        content_hash.update(f"{_file_signature(path)}\n".encode(errors="surrogateescape"))
    return f"{list_hash.hexdigest()[:16]}-{size}px-{content_hash.hexdigest()[:16]}"


@dataclass
class DecodedCache:
    """A decoded image cache: rows of uint8 pixels plus the map back to the source files.

    Attributes:
        data_path: The raw uint8 file holding the rows.
        size: Side ``S`` of the stored squares.
        source_paths: The files the cache was built from, in order.
        valid: int64 array ``(M,)``: row ``r`` holds ``source_paths[valid[r]]``. Use it to
            align labels: ``labels[cache.valid]``.
        skip_reasons: ``file -> why it could not be decoded`` (error type and message), in
            file order, for the files not stored (``UNKNOWN_DECODE_FAILURE`` for a cache
            written before reasons were kept).
    """

    data_path: Path
    size: int
    source_paths: list[Path]
    valid: np.ndarray
    skip_reasons: dict[Path, str] = field(default_factory=dict)
    _images: np.memmap | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def skipped(self) -> list[Path]:
        """The files that could not be decoded (not stored), in file order."""
        return list(self.skip_reasons)

    @property
    def images(self) -> np.memmap:
        """Read-only uint8 memmap ``(M, 3, S, S)``, opened on first use (per process)."""
        if self._images is None:
            self._images = np.memmap(
                self.data_path,
                dtype=np.uint8,
                mode="r",
                shape=(len(self.valid), 3, self.size, self.size),
            )
        return self._images

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        """Gathers rows into a tensor.

        Args:
            rows: int array ``(B,)`` of row numbers; sorted rows read the file in order.

        Returns:
            ``torch.uint8`` tensor ``(B, 3, S, S)`` (a fresh, writable copy).
        """
        return torch.from_numpy(np.asarray(self.images[rows]).view(np.ndarray))

    def __getstate__(self) -> dict:
        # Pickling a memmap would copy the whole array; workers reopen the file instead.
        state = self.__dict__.copy()
        state["_images"] = None
        return state


def is_cached(
    paths: Sequence[str | os.PathLike], size: int, directory: str | os.PathLike | None = None
) -> bool:
    """Whether a finished cache of exactly ``paths`` at ``size`` exists (nothing is read
    but the files' sizes and times, the cache's record and its data file's size)."""
    if size < 1 or not paths:
        return False
    folder, name, source_paths = _located(paths, size, directory)
    return _load(folder, name, source_paths, size, quiet=True) is not None


def _located(
    paths: Sequence[str | os.PathLike], size: int, directory: str | os.PathLike | None
) -> tuple[Path, str, list[Path]]:
    """``(cache folder, cache name, absolute source paths)`` of ``paths`` at ``size``."""
    source_paths = [Path(p).absolute() for p in paths]
    folder = Path(directory) if directory is not None else default_cache_dir()
    return folder, cache_name(source_paths, size), source_paths


def load_or_build_cache(
    paths: Sequence[str | os.PathLike],
    size: int,
    directory: str | os.PathLike | None = None,
    workers: int | None = None,
) -> DecodedCache:
    """Returns the decoded cache of ``paths`` at ``size``, building it if needed.

    Args:
        paths: Image files, e.g. ``ImageFolder.paths``; their order is the cache's order.
        size: Side ``S`` of the stored squares (32 for CIFAR-10 stores it natively).
        directory: Where caches live (default :func:`default_cache_dir`).
        workers: Decoding processes for a first run; 0 or 1 decodes in this process, None
            uses every core this process may use (the build is a one-off wait before
            training, with nothing else to run on the cores).

    Returns:
        The cache; files that failed to decode are listed in ``skipped``.

    Raises:
        ContrastiveError: If ``paths`` is empty, ``size`` < 1, or no file can be decoded.
    """
    if size < 1:
        raise ContrastiveError(f"cache image size must be at least 1 pixel, got {size}")
    if not paths:
        raise ContrastiveError("no images to cache: the file list is empty")
    folder, name, source_paths = _located(paths, size, directory)
    cache = _load(folder, name, source_paths, size)
    if cache is None:
        _check_creatable(folder)
        cache = _build(folder, name, source_paths, size, workers)
        _remove_stale(folder, name)
        hint = usage_hint(folder)
        if hint:
            log.info(hint)
    elif cache.skipped:
        shown = ", ".join(str(p) for p in cache.skipped[:5])
        more = f" and {len(cache.skipped) - 5} more" if len(cache.skipped) > 5 else ""
        warnings.warn(
            f"decoded cache skips {len(cache.skipped)} unreadable image(s): {shown}{more}",
            stacklevel=2,
        )
    return cache


def _check_creatable(folder: Path) -> None:
    """Refuses a cache folder that cannot be made, naming the ways around it (a read-only
    home in a cron job or a container)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ContrastiveError(
            f"cannot create the decoded-image cache folder {folder}: {error.strerror or error}; "
            f"point --cache-dir (or the {CACHE_ENV} environment variable) at a writable "
            "folder, or train with --no-cache"
        ) from None


def _load(
    folder: Path, name: str, source_paths: list[Path], size: int, quiet: bool = False
) -> DecodedCache | None:
    """Opens a finished cache, or returns None if it is missing or inconsistent."""
    meta_path, data_path = folder / f"{name}.json", folder / f"{name}.uint8"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        skipped_indices = [int(i) for i in meta["skipped"]]
        reasons = {int(i): str(reason) for i, reason in meta.get("reasons", {}).items()}
        row_count = int(meta["rows"])
        data_bytes = data_path.stat().st_size
    # A damaged record (wrong types anywhere) means a rebuild, never a traceback.
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if (
        meta.get("version") != CACHE_VERSION
        or meta.get("size") != size
        or meta.get("files") != len(source_paths)
        or row_count != len(source_paths) - len(skipped_indices)
        or data_bytes != row_count * 3 * size * size
    ):
        return None
    if not quiet:
        log.info("reusing decoded cache %s (%d images)", data_path, row_count)
        mark_used(meta_path)
    failures = {i: reasons.get(i, UNKNOWN_DECODE_FAILURE) for i in skipped_indices}
    return _decoded_cache(data_path, size, source_paths, failures)


# The rows file of the build in progress, opened once per decoding process.
_worker_rows: np.memmap | None = None


def _open_rows(path: str, count: int, size: int) -> None:
    """Pool initializer: maps the rows file being built, for writing."""
    global _worker_rows
    _worker_rows = np.memmap(path, dtype=np.uint8, mode="r+", shape=(count, 3, size, size))


def _decode_into_rows(tasks: list[tuple[int, str, int]]) -> list[tuple[int, str]]:
    """Decodes files into row ``index`` of the shared rows file; returns the failures.

    The pixels never travel back through a pipe (at 128 px and more, pickling them cost
    the pool its gain): a worker writes the file's shared pages, the parent only collects
    the failures.
    """
    assert _worker_rows is not None, "_open_rows runs first"
    failures = []
    for task in tasks:
        index, decoded = _decode(task)
        if isinstance(decoded, str):
            failures.append((index, decoded))
        else:
            _worker_rows[index] = decoded
    return failures


def _decode_all(
    rows: np.memmap, path: Path, source_paths: list[Path], size: int, workers: int | None
) -> dict[int, str]:
    """Writes file ``i`` into ``rows[i]``; returns ``{index: error}`` of the files that failed.

    Every row's place is its file's index, so the result does not depend on the order in
    which the workers finish.
    """
    tasks = [(i, str(p), size) for i, p in enumerate(source_paths)]
    if workers is None:
        workers = usable_cores()
    if workers <= 1 or len(tasks) < _MIN_FILES_FOR_POOL:
        failures = {}
        for task in tasks:
            index, decoded = _decode(task)
            if isinstance(decoded, str):
                failures[index] = decoded
            else:
                rows[index] = decoded
        return failures
    rows.flush()  # the workers map the same file
    chunks = [tasks[start : start + _POOL_CHUNK] for start in range(0, len(tasks), _POOL_CHUNK)]
    # fork starts workers in milliseconds; they only run PIL and numpy, never torch.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(
        min(workers, len(chunks)), initializer=_open_rows, initargs=(str(path), len(tasks), size)
    ) as pool:
        return dict(
            failure
            for failures in pool.imap_unordered(_decode_into_rows, chunks)
            for failure in failures
        )


def _build(
    folder: Path, name: str, source_paths: list[Path], size: int, workers: int | None
) -> DecodedCache:
    """Decodes every file into a new cache (memory stays bounded: rows go to the file)."""
    meta_path, data_path = folder / f"{name}.json", folder / f"{name}.uint8"
    row_bytes = 3 * size * size
    started = time.perf_counter()
    log.info("decoding %d images into %s", len(source_paths), data_path)
    with atomic_path(data_path) as temporary:
        rows = np.memmap(
            temporary, dtype=np.uint8, mode="w+", shape=(len(source_paths), 3, size, size)
        )
        failures = _decode_all(rows, Path(temporary), source_paths, size, workers)
        skipped_indices = sorted(failures)
        for index in skipped_indices:
            warnings.warn(
                f"skipping unreadable image {source_paths[index]}: {failures[index]}",
                stacklevel=3,
            )
        if len(skipped_indices) == len(source_paths):
            raise ContrastiveError(
                f"none of the {len(source_paths)} images could be decoded "
                f"(first: {source_paths[0]})"
            )
        row = len(source_paths) - len(skipped_indices)
        if skipped_indices:
            # Rows sit at their file's index: close the gaps of the skipped files, in
            # order (a row only moves down, onto one already moved or skipped).
            for target, index in enumerate(
                np.setdiff1d(np.arange(len(source_paths)), skipped_indices)
            ):
                if target != index:
                    rows[target] = rows[index]
        rows.flush()
        del rows
        # Skipped files leave unused rows at the end; the file keeps only the written ones.
        os.truncate(temporary, row * row_bytes)
    write_text_atomic(
        meta_path,
        json.dumps(
            {
                "version": CACHE_VERSION,
                "size": size,
                "files": len(source_paths),
                "folder": images_folder(source_paths),
                "rows": row,
                "skipped": skipped_indices,
                "reasons": {str(index): failures[index] for index in skipped_indices},
            }
        ),
    )
    log.info("decoded %d images in %.1f s", row, time.perf_counter() - started)
    return _decoded_cache(data_path, size, source_paths, failures)


def _decoded_cache(
    data_path: Path, size: int, source_paths: list[Path], failures: Mapping[int, str]
) -> DecodedCache:
    """The cache of ``data_path``: a row for every source file but the failed ones
    (``failures``: ``{index: reason}``)."""
    skipped_indices = sorted(failures)
    valid = np.setdiff1d(
        np.arange(len(source_paths), dtype=np.int64), np.asarray(skipped_indices, dtype=np.int64)
    )
    return DecodedCache(
        data_path=data_path,
        size=size,
        source_paths=source_paths,
        valid=valid,
        skip_reasons={source_paths[i]: failures[i] for i in skipped_indices},
    )


def _remove_stale(folder: Path, name: str) -> None:
    """Deletes older caches of the same file list and size (their files changed since)."""
    list_hash, size_tag, _ = name.split("-")
    for stale in folder.glob(f"{list_hash}-{size_tag}-*"):
        if stale.stem != name:
            stale.unlink(missing_ok=True)


class CachedImageLoader:
    """Batches of random cache rows without per-sample Python work.

    Each batch is one fancy-indexed read of the memmap with its row numbers sorted (so the
    file is read front to back); batch membership is random, order within a batch is not.
    The permutation of an epoch comes from a ``torch.Generator`` seeded with
    ``(seed, epoch)``; each iteration advances the epoch unless :meth:`set_epoch` is called.
    A plain iterable with ``__len__``, so Lightning accepts it as a train dataloader.

    With ``prefetch``, a background thread reads (and pins) the next batch while the
    training step runs on the current one: the memmap read and the copy into page-locked
    memory release the GIL, so they overlap the step instead of stalling it. That pays
    where the step runs on a GPU; on CPU the thread competes with the step for the cores
    and a batch alone arrives slower (``benchmarks/README.md``, issue 18), so it is off.

    Args:
        cache: The decoded images.
        batch_size: Rows per batch.
        shuffle: Draw a new random permutation per epoch; else rows in order.
        drop_last: Drop the last, smaller batch.
        seed: Base seed of the per-epoch permutations.
        rank: This process's shard, for multi-process training.
        world_size: Number of shards; each gets ``len(cache) // world_size`` rows per epoch.
        pin_memory: Return page-locked tensors, for asynchronous copies to a GPU.
        prefetch: Read the next batch in a background thread.

    Yields:
        ``(images, file_indices)``: ``torch.uint8 (B, 3, S, S)`` and ``torch.int64 (B,)``
        indexing the cache's ``source_paths``.
    """

    def __init__(
        self,
        cache: DecodedCache,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
        prefetch: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ContrastiveError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ContrastiveError(f"rank {rank} must lie in [0, world_size={world_size})")
        self.cache = cache
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pin_memory = pin_memory
        self.prefetch = prefetch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration use the permutation of ``epoch``."""
        self.epoch = epoch

    def _rows_per_shard(self) -> int:
        return len(self.cache) // self.world_size if self.world_size > 1 else len(self.cache)

    def __len__(self) -> int:
        rows = self._rows_per_shard()
        return rows // self.batch_size if self.drop_last else math.ceil(rows / self.batch_size)

    def epoch_rows(self, epoch: int) -> torch.Tensor:
        """This shard's row order for ``epoch``: int64 ``(rows_per_shard,)``."""
        count = len(self.cache)
        if self.shuffle:
            seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
            order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(count)
        if self.world_size > 1:
            order = order[: self._rows_per_shard() * self.world_size][self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.epoch_rows(self.epoch).numpy()
        self.epoch += 1
        valid = torch.from_numpy(self.cache.valid)

        def read(batch_number: int) -> tuple[torch.Tensor, torch.Tensor]:
            rows = np.sort(
                order[batch_number * self.batch_size : (batch_number + 1) * self.batch_size]
            )
            images = self.cache.batch(rows)
            if self.pin_memory:
                images = images.pin_memory()
            return images, valid[torch.from_numpy(rows)]

        if not self.prefetch or len(self) < 2:
            for batch_number in range(len(self)):
                yield read(batch_number)
            return
        # One batch ahead: the thread reads batch n + 1 while the caller uses batch n.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-prefetch") as pool:
            pending = pool.submit(read, 0)
            try:
                for batch_number in range(1, len(self) + 1):
                    batch = pending.result()
                    if batch_number < len(self):
                        pending = pool.submit(read, batch_number)
                    yield batch
            finally:
                # Stopped early (a resume skipping batches, an interrupt): the read in
                # flight finishes, its batch is dropped.
                pending.cancel()
