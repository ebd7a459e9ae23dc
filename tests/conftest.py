"""Shared fixtures: small real CIFAR-10 class folders extracted from shared/data/cifar10."""

from __future__ import annotations

from pathlib import Path

import pytest

from contrastive.data.cifar10 import default_archive_dir, ensure_cifar10, subset


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """The full CIFAR-10 JPEG folders (``train/``, ``test/``), extracted once to the cache."""
    if not (default_archive_dir() / "train.tar.gz").is_file():
        pytest.skip(f"CIFAR-10 archives not found in {default_archive_dir()}")
    return ensure_cifar10()


@pytest.fixture(scope="session")
def cifar10_small(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """30 train and 10 test images per class (300 / 100 images), as class folders."""
    base = tmp_path_factory.mktemp("cifar10_small")
    return {
        "train": subset(cifar10_root / "train", base / "train", per_class=30, seed=0),
        "test": subset(cifar10_root / "test", base / "test", per_class=10, seed=0),
    }
