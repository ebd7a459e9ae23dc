"""The decoded caches on disk: where they live, what each holds, when it was last used, and
removing the ones no longer needed.

A cache is a pair ``NAME.json`` (its record) and ``NAME.uint8`` (its rows), see
:mod:`contrastive.data.cache`. A changed file list (one photo added to a folder) gives a new
cache and leaves the old one, so caches pile up; ``contrastive cache list|clean`` shows and
removes them. Each reuse refreshes the record's modification time, which is what "last used"
means here (access times are unreliable: ``noatime``/``relatime`` mounts).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from contrastive.cache_root import cache_dir
from contrastive.files import disk_size

#: Suffixes of a cache's two files.
RECORD_SUFFIX, ROWS_SUFFIX = ".json", ".uint8"
#: A build's temporary rows file untouched for this long was left by a killed build.
ABANDONED_BUILD_SECONDS = 3600
#: Above this many bytes of caches, a new build mentions ``contrastive cache``.
LARGE_CACHE_BYTES = 2 * 10**9


def default_cache_dir() -> Path:
    """``contrastive.cache_root.cache_dir()/decoded``."""
    return cache_dir() / "decoded"


@dataclass(frozen=True)
class CacheEntry:
    """One decoded cache.

    Attributes:
        name: Its file stem (``<list hash>-<size>px-<content hash>``).
        side: Side of its stored squares, in pixels (0 if its record cannot be read).
        images: Rows it holds (0 if unknown).
        bytes: Bytes of its two files together.
        last_used: When it was built or last reused (seconds since the epoch).
        folder: The folder its images lie in (empty for caches built before it was recorded).
        files: Its files on disk (record first, where present).
    """

    name: str
    side: int
    images: int
    bytes: int
    last_used: float
    folder: str
    files: tuple[Path, ...]


def mark_used(record: Path) -> None:
    """Refreshes a cache's "last used" time; a read-only cache folder keeps the old one."""
    with contextlib.suppress(OSError):
        os.utime(record)


def images_folder(paths: Sequence[Path]) -> str:
    """The deepest folder holding every one of ``paths`` (recorded to name a cache's data)."""
    try:
        return os.path.commonpath([os.fspath(path.parent) for path in paths]) if paths else ""
    except ValueError:  # paths on different Windows drives
        return ""


def list_caches(directory: str | os.PathLike | None = None) -> list[CacheEntry]:
    """Every cache in ``directory`` (default :func:`default_cache_dir`), most recently used
    first; a rows file without its record (a cache whose record was lost) is listed too."""
    folder = Path(directory) if directory is not None else default_cache_dir()
    if not folder.is_dir():
        return []
    stems: dict[str, list[Path]] = {}
    for path in folder.iterdir():
        if path.suffix in (RECORD_SUFFIX, ROWS_SUFFIX) and not path.name.startswith("."):
            stems.setdefault(path.stem, []).append(path)
    entries = [_entry(name, sorted(files)) for name, files in stems.items()]
    return sorted(entries, key=lambda entry: entry.last_used, reverse=True)


def _entry(name: str, files: list[Path]) -> CacheEntry:
    record = next((path for path in files if path.suffix == RECORD_SUFFIX), None)
    stats = {path: _stat(path) for path in files}
    meta: dict = {}
    if record is not None:
        try:
            meta = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
    if not isinstance(meta, dict):
        meta = {}
    last_used = max((stat.st_mtime for stat in stats.values() if stat), default=0.0)
    if record is not None and stats[record]:
        last_used = stats[record].st_mtime
    return CacheEntry(
        name=name,
        side=_int(meta.get("size")),
        images=_int(meta.get("rows")),
        bytes=sum(stat.st_size for stat in stats.values() if stat),
        last_used=last_used,
        folder=str(meta.get("folder", "")),
        files=tuple(files),
    )


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def abandoned_builds(
    directory: str | os.PathLike | None = None, now: float | None = None
) -> list[Path]:
    """Temporary files of builds that were killed (untouched for an hour or more)."""
    folder = Path(directory) if directory is not None else default_cache_dir()
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    found = []
    for path in folder.glob(".*.tmp"):
        stat = _stat(path)
        if stat and now - stat.st_mtime >= ABANDONED_BUILD_SECONDS:
            found.append(path)
    return sorted(found)


def file_bytes(paths: Iterable[Path]) -> int:
    """Bytes of the files together (a missing one counts 0)."""
    return sum(stat.st_size for stat in map(_stat, paths) if stat)


def remove_files(paths: Iterable[Path]) -> int:
    """Deletes files (a missing one is skipped); returns the bytes freed.

    The record goes first, so a cache interrupted half-way is never trusted again. A
    process still reading a removed cache keeps its mapping until it ends (POSIX).
    """
    freed = 0
    for path in sorted(paths, key=lambda path: path.suffix != RECORD_SUFFIX):
        stat = _stat(path)
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        freed += stat.st_size if stat else 0
    return freed


def usage_hint(directory: str | os.PathLike | None = None) -> str | None:
    """A line pointing to ``contrastive cache`` once the caches take much disk, else None."""
    entries = list_caches(directory)
    total = sum(entry.bytes for entry in entries)
    if total < LARGE_CACHE_BYTES:
        return None
    folder = Path(directory) if directory is not None else default_cache_dir()
    return (
        f"decoded caches take {disk_size(total)} in {folder} ({len(entries)} caches); "
        "`contrastive cache list` shows them, `contrastive cache clean` removes unused ones"
    )
