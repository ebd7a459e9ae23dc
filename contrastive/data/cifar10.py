"""CIFAR-10 as JPEG class folders, from the archives in ``shared/data/cifar10``.

Nothing is downloaded: the archives must already be on disk. They are extracted once to a
cache directory outside the repository and reused.
"""

from __future__ import annotations

import os
import random
import shutil
import tarfile
from pathlib import Path

from contrastive.cache_root import cache_dir
from contrastive.errors import ContrastiveError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def default_archive_dir() -> Path:
    """``$CONTRASTIVE_CIFAR10_ARCHIVES``, else ``shared/data/cifar10`` beside the checkout."""
    if "CONTRASTIVE_CIFAR10_ARCHIVES" in os.environ:
        return Path(os.environ["CONTRASTIVE_CIFAR10_ARCHIVES"])
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data" / "cifar10"


def ensure_cifar10(
    archive_dir: str | os.PathLike | None = None, destination: str | os.PathLike | None = None
) -> Path:
    """Extracts ``train.tar.gz`` and ``test.tar.gz`` once; returns the folder holding both.

    Args:
        archive_dir: Folder with the two archives (default :func:`default_archive_dir`).
        destination: Where to extract (default ``cache_dir()/cifar10``).

    Returns:
        A folder with ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``.
    """
    archives = Path(archive_dir) if archive_dir is not None else default_archive_dir()
    target = Path(destination) if destination is not None else cache_dir() / "cifar10"
    for split in ("train", "test"):
        done = target / f".{split}.complete"
        if done.exists():
            continue
        archive = archives / f"{split}.tar.gz"
        if not archive.is_file():
            raise ContrastiveError(f"CIFAR-10 archive not found: {archive}")
        target.mkdir(parents=True, exist_ok=True)
        partial = target / f".{split}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
        shutil.rmtree(target / split, ignore_errors=True)
        (partial / split).rename(target / split)
        shutil.rmtree(partial, ignore_errors=True)
        done.touch()
    return target


def subset(
    source: str | os.PathLike, destination: str | os.PathLike, per_class: int, seed: int = 0
) -> Path:
    """Copies ``per_class`` randomly chosen images of each class folder to ``destination``.

    Returns:
        ``destination``, a class-folder image set.
    """
    source_path, target = Path(source), Path(destination)
    rng = random.Random(seed)
    for class_dir in sorted(p for p in source_path.iterdir() if p.is_dir()):
        files = sorted(class_dir.iterdir())
        if per_class > len(files):
            raise ContrastiveError(f"{class_dir} has only {len(files)} images, asked {per_class}")
        (target / class_dir.name).mkdir(parents=True, exist_ok=True)
        for file in rng.sample(files, per_class):
            shutil.copyfile(file, target / class_dir.name / file.name)
    return target
