"""The built-in demo data set: scikit-learn's bundled handwritten digits as image folders.

1,797 8x8 grayscale digits (shipped inside scikit-learn, nothing is downloaded) are
upscaled to 32x32 PNGs and written once as ``train/<digit>/`` and ``test/<digit>/`` class
folders (a stratified 80/20 split) in the cache directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from contrastive.data.cifar10 import cache_dir

DEMO_SIZE = 32
_VERSION = "digits-v1"


def ensure_demo_digits(destination: str | os.PathLike | None = None) -> Path:
    """Writes the digits as PNG class folders once; returns the folder with train/ and test/."""
    from sklearn.datasets import load_digits

    target = Path(destination) if destination is not None else cache_dir() / "demo_digits"
    marker = target / f".{_VERSION}.complete"
    if marker.exists():
        return target
    digits = load_digits()
    images = (digits.images / 16.0 * 255.0).clip(0, 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for label in range(10):
        indices = np.flatnonzero(digits.target == label)
        rng.shuffle(indices)
        cut = int(round(0.8 * len(indices)))
        for split, chosen in (("train", indices[:cut]), ("test", indices[cut:])):
            folder = partial / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for index in chosen:
                image = Image.fromarray(images[index], mode="L")
                image = image.resize((DEMO_SIZE, DEMO_SIZE), Image.Resampling.BICUBIC)
                image.save(folder / f"{index:04d}.png")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    marker.touch()
    return target
