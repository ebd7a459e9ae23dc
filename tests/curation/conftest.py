"""Fixtures for the curation tests: textured image folders and a fabricated run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def textured_image(rng: np.random.Generator, side: int = 48) -> Image.Image:
    """A random smooth colour image (6x6 random pixels upscaled): distinct from any other."""
    base = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((side, side), Image.Resampling.BICUBIC)


def write_textured_folder(root: Path, per_class: dict[str, int], seed: int = 0) -> list[Path]:
    """Class folders (``{"": n}`` for a flat folder) of distinct textured PNGs, in order."""
    rng = np.random.default_rng(seed)
    paths = []
    for name, count in per_class.items():
        folder = root / name if name else root
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            paths.append(folder / f"{index:03d}.png")
            textured_image(rng).save(paths[-1])
    return paths


@pytest.fixture
def make_textured_folder() -> object:
    """:func:`write_textured_folder`, for the tests (they cannot import conftest)."""
    return write_textured_folder
