"""The built-in demo data set: scikit-learn's digits, each at its own place and size.

Each of the 1,797 8x8 handwritten digits shipped inside scikit-learn (nothing is
downloaded) is drawn white on black into a 32x32 image at a random size and offset, with
faint noise, and written once as ``train/<digit>/`` and ``test/<digit>/`` PNG class folders
(a stratified 80/20 split) in the cache directory.

Centred digits would make a poor demo: raw pixels already classify them almost perfectly
(98.9% kNN), so training cannot show what it adds. Moved and scaled, the same strokes no
longer line up pixel for pixel, and an untrained network's features follow the position
more than the shape; an encoder trained to match random crops of the same image learns
to ignore where the digit is and keeps what it is.

Only what the training views undo varies (place and size, which random crops change):
a nuisance they do not undo, such as a random colour per image, would be the easiest way
to tell images apart, and contrastive training would learn it instead of the shape.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from contrastive.cache_root import cache_dir

DEMO_SIZE = 32
# Bump when the rendering changes: an older cache without this marker is rebuilt.
_VERSION = "digits-moved-v1"
#: Range of the digit's side and largest offset from the centre, in pixels.
DIGIT_SIDE = (24, 32)
MAX_OFFSET = 6
_NOISE_SIGMA = 0.03


def render_digit(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws one 8x8 digit (ink 0..16) at a random size and offset.

    Args:
        digit: ``(8, 8)`` scikit-learn digit.
        rng: The random generator (size, offset, noise).

    Returns:
        ``(DEMO_SIZE, DEMO_SIZE, 3)`` uint8 RGB image, white digit on black.
    """
    side = int(rng.integers(DIGIT_SIDE[0], DIGIT_SIDE[1] + 1))
    ink = Image.fromarray((digit / 16.0 * 255).clip(0, 255).astype(np.uint8), mode="L")
    ink = np.asarray(ink.resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255.0
    # Drawn on a canvas with a MAX_OFFSET margin, then cut back to DEMO_SIZE: the digit may
    # leave the frame a little, as real objects do.
    canvas_side = DEMO_SIZE + 2 * MAX_OFFSET
    canvas = np.zeros((canvas_side, canvas_side), np.float32)
    dy, dx = (int(v) for v in rng.integers(-MAX_OFFSET, MAX_OFFSET + 1, size=2))
    top, left = (canvas_side - side) // 2 + dy, (canvas_side - side) // 2 + dx
    canvas[top : top + side, left : left + side] = ink
    image = canvas[MAX_OFFSET : MAX_OFFSET + DEMO_SIZE, MAX_OFFSET : MAX_OFFSET + DEMO_SIZE]
    image = image[..., None] + rng.normal(0, _NOISE_SIGMA, size=(DEMO_SIZE, DEMO_SIZE, 3))
    return (image.clip(0, 1) * 255 + 0.5).astype(np.uint8)


def ensure_demo_digits(destination: str | os.PathLike | None = None) -> Path:
    """Writes the digits as PNG class folders once; returns the folder with train/ and test/.

    The rendering is seeded, so every machine gets the same images.
    """
    from sklearn.datasets import load_digits

    target = Path(destination) if destination is not None else cache_dir() / "demo_digits"
    marker = target / f".{_VERSION}.complete"
    if marker.exists():
        return target
    digits = load_digits()
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
                image = render_digit(digits.images[index], rng)
                Image.fromarray(image, mode="RGB").save(folder / f"{index:04d}.png")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    marker.touch()
    return target
