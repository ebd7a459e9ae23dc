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
