"""Fixtures for evaluation tests: tiny colour-coded class folders and a fabricated run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: Each class is one colour plus noise, so raw pixels separate the classes perfectly.
COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def write_colour_folder(
    root: Path, per_class: int, seed: int, classes: tuple[str, ...] = tuple(COLOURS), size: int = 18
) -> Path:
    """Class folders of noisy single-colour PNGs."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(-25, 26, size=(size, size, 3))
            pixels = np.clip(np.array(COLOURS[name]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture
def make_colour_folder() -> object:
    """:func:`write_colour_folder`, for tests that need unusual folders."""
    return write_colour_folder


@pytest.fixture
def colour_folders(tmp_path: Path) -> dict[str, Path]:
    """``train`` (6 per class) and ``test`` (3 per class) folders of three colour classes."""
    return {
        "train": write_colour_folder(tmp_path / "train", 6, seed=0),
        "test": write_colour_folder(tmp_path / "test", 3, seed=1),
    }


def write_npz_pair(folder: Path, per_class: int = 4, source: str = "some_run") -> tuple[Path, Path]:
    """Train/test .npz files of three Gaussian classes (no images, no encoder: fast CLI runs);
    ``per_class`` train and 2 test images per class, recorded as made by ``source``."""
    from contrastive.embeddings import Embeddings, save_embeddings

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 8)) * 3
    paths = []
    for name, count in (("train", per_class), ("test", 2)):
        labels = np.repeat(np.arange(3), count)
        features = centres[labels] + rng.standard_normal((len(labels), 8))
        embeddings = Embeddings(
            features.astype(np.float32),
            np.array([f"c{label}/{i}.png" for i, label in enumerate(labels)]),
            labels,
            ["c0", "c1", "c2"],
            source=source,
        )
        save_embeddings(embeddings, folder / f"{name}.npz")
        paths.append(folder / f"{name}.npz")
    return paths[0], paths[1]


@pytest.fixture
def npz_pair() -> object:
    """:func:`write_npz_pair`, for CLI tests that need no images."""
    return write_npz_pair
