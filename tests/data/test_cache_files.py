"""The decoded caches on disk: listing, last use, and ``contrastive cache list|clean``."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import contrastive.data.cache_files as cache_files
from contrastive.cli import main
from contrastive.data.cache import is_cached, load_or_build_cache
from contrastive.data.cache_files import abandoned_builds, list_caches, usage_hint

DAY = 86400.0
#: File systems store modification times coarsely (FAT: 2 s); "after" allows for that.
MTIME_SLACK = 2.0


def write_images(folder: Path, count: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    paths = []
    for index in range(start, start + count):
        path = folder / f"{index:03d}.png"
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def age(entry_files: tuple[Path, ...], days: float) -> None:
    """Makes a cache look unused for ``days``."""
    past = time.time() - days * DAY
    for path in entry_files:
        os.utime(path, (past, past))


def test_a_built_cache_is_listed_with_its_folder_size_and_images(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "photos" / "a", 5) + write_images(tmp_path / "photos" / "b", 3)
    built_after = time.time() - MTIME_SLACK
    load_or_build_cache(paths, 8, tmp_path / "cache", workers=0)

    (entry,) = list_caches(tmp_path / "cache")

    assert (entry.side, entry.images) == (8, 8)
    assert entry.folder == str((tmp_path / "photos").absolute())
    assert entry.bytes == sum(path.stat().st_size for path in entry.files)
    assert entry.bytes > 8 * 3 * 8 * 8  # rows plus the record
    assert entry.last_used >= built_after  # the build is its first use


def test_reuse_refreshes_last_use(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "photos", 4)
    load_or_build_cache(paths, 8, tmp_path / "cache", workers=0)
    age(list_caches(tmp_path / "cache")[0].files, days=40)
    aged = list_caches(tmp_path / "cache")[0].last_used
    reused_after = time.time() - MTIME_SLACK
    assert aged < reused_after - 39 * DAY

    load_or_build_cache(paths, 8, tmp_path / "cache", workers=0)

    assert list_caches(tmp_path / "cache")[0].last_used >= reused_after


def test_clean_removes_only_caches_unused_for_the_given_days(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    paths = write_images(tmp_path / "photos", 4)
    load_or_build_cache(paths, 8, cache, workers=0)
    # One photo added: a new file list, a new cache; the old one stays behind.
    grown = paths + write_images(tmp_path / "photos", 1, start=4)
    load_or_build_cache(grown, 8, cache, workers=0)
    old, new = sorted(list_caches(cache), key=lambda entry: entry.images)
    age(old.files, days=31)

    assert main(["cache", "clean", "--cache-dir", str(cache), "--dry-run"]) == 0
    assert "would remove 1 caches" in capsys.readouterr().out
    assert all(path.exists() for path in old.files)

    assert main(["cache", "clean", "--cache-dir", str(cache)]) == 0
    output = capsys.readouterr().out
    assert "removed 1 caches" in output and "kept 1 caches" in output
    assert not any(path.exists() for path in old.files)
    assert not is_cached(paths, 8, cache) and is_cached(grown, 8, cache)

    assert main(["cache", "clean", "--cache-dir", str(cache), "--all"]) == 0
    assert list_caches(cache) == [] and not is_cached(grown, 8, cache)


def test_killed_builds_and_records_lost_are_cleaned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    killed = cache / ".abc-8px-def.uint8.x1.tmp"
    killed.write_bytes(b"\0" * 1000)
    running = cache / ".abc-8px-fed.uint8.x2.tmp"
    running.write_bytes(b"\0" * 1000)
    orphan = cache / "0123-8px-4567.uint8"
    orphan.write_bytes(b"\0" * 192)
    age((killed, orphan), days=2)

    assert abandoned_builds(cache) == [killed]
    (entry,) = list_caches(cache)
    assert (entry.name, entry.side, entry.images) == ("0123-8px-4567", 0, 0)
    assert main(["cache", "list", "--cache-dir", str(cache)]) == 0
    assert "(not recorded)" in capsys.readouterr().out

    assert main(["cache", "clean", "--cache-dir", str(cache), "--unused-days", "1"]) == 0
    assert "removed 1 caches and 1 file(s) of killed builds" in capsys.readouterr().out
    assert not killed.exists() and not orphan.exists() and running.exists()


def test_a_large_cache_folder_is_pointed_out_after_a_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    paths = write_images(tmp_path / "photos", 3)
    assert usage_hint(tmp_path / "cache") is None
    monkeypatch.setattr(cache_files, "LARGE_CACHE_BYTES", 100)

    with caplog.at_level(logging.INFO):
        load_or_build_cache(paths, 8, tmp_path / "cache", workers=0)

    assert "`contrastive cache clean` removes unused ones" in caplog.text
    assert "(1 caches)" in caplog.text


def test_listing_an_empty_or_missing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert list_caches(tmp_path / "nowhere") == []
    assert main(["cache", "list", "--cache-dir", str(tmp_path / "nowhere")]) == 0
    assert "no decoded caches in" in capsys.readouterr().out
    assert main(["cache", "clean", "--cache-dir", str(tmp_path / "nowhere")]) == 0
    assert "removed 0 caches" in capsys.readouterr().out


def test_bad_days_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["cache", "clean", "--unused-days", "-1"])
    assert exit_info.value.code == 2
    assert "--unused-days: expected a number of days >= 0" in capsys.readouterr().err
