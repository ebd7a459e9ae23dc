"""Shared fixtures: small real-photo class folders, from CIFAR-10 or from scikit-learn's photos.

``cifar10_small`` is real CIFAR-10 when the archives in ``shared/data/cifar10`` (or
``$CONTRASTIVE_CIFAR10_ARCHIVES``) are there. On a machine without them (a fresh clone) it is
built from the two sample photographs that ship inside scikit-learn, so the end-to-end,
cache, projector and exploration tests still run. Checks that only mean something on
CIFAR-10 (the accuracy guard) ask for ``cifar10_root``, which skips without the archives,
or fails when ``CONTRASTIVE_REQUIRE_CIFAR10=1`` (CI sets it, so CI cannot pass without them).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.data.cifar10 import default_archive_dir, ensure_cifar10, subset
from contrastive.views.config import ViewConfig

#: Set to 1 (CI does) to make missing CIFAR-10 archives a failure instead of a skip.
REQUIRE_CIFAR10 = "CONTRASTIVE_REQUIRE_CIFAR10"

#: The fallback's ten classes: regions ``(left, top, right, bottom)`` of scikit-learn's
#: 640x427 sample photographs, each showing one kind of thing, so crops of one region look
#: alike and crops of different regions do not.
PHOTO_REGIONS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "china_lake": ("china.jpg", (330, 200, 560, 300)),
    "china_roof": ("china.jpg", (110, 30, 310, 200)),
    "china_sky": ("china.jpg", (400, 0, 640, 140)),
    "china_tower": ("china.jpg", (90, 200, 330, 360)),
    "china_trees": ("china.jpg", (480, 200, 640, 427)),
    "flower_bud": ("flower.jpg", (280, 350, 440, 427)),
    "flower_centre": ("flower.jpg", (265, 165, 355, 255)),
    "flower_leaves_left": ("flower.jpg", (0, 40, 180, 380)),
    "flower_leaves_right": ("flower.jpg", (460, 40, 640, 380)),
    "flower_petals": ("flower.jpg", (190, 100, 430, 330)),
}
_CROP_SIDE = (40, 96)  # range of a crop's side in photo pixels, before resizing


def cifar10_archives_present() -> bool:
    """Whether both CIFAR-10 archives are in :func:`default_archive_dir`."""
    archives = default_archive_dir()
    return all((archives / f"{split}.tar.gz").is_file() for split in ("train", "test"))


def cifar10_required() -> bool:
    """Whether ``$CONTRASTIVE_REQUIRE_CIFAR10`` asks for the archives (set and not 0)."""
    return os.environ.get(REQUIRE_CIFAR10, "") not in ("", "0")


def write_photo_crop_folders(
    root: Path, per_class: dict[str, int], size: int = 32, seed: int = 0
) -> dict[str, Path]:
    """Class folders of JPEG crops of scikit-learn's sample photographs.

    Each class is one region of :data:`PHOTO_REGIONS`; each image is a random square crop
    inside it (random side in ``_CROP_SIDE``, mirrored half the time), resized to ``size``.

    Args:
        root: Folder to write ``<split>/<class>/<index>.jpg`` into.
        per_class: Split name -> images per class, e.g. ``{"train": 30, "test": 10}``.
        size: Side of the square images, in pixels.
        seed: Seed of the crop positions, sides and mirroring.

    Returns:
        Split name -> its class-folder root.
    """
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    photos = {Path(name).name: image for name, image in zip(sample.filenames, sample.images)}
    rng = np.random.default_rng(seed)
    splits = {}
    for split, count in per_class.items():
        for name, (photo, (left, top, right, bottom)) in PHOTO_REGIONS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            largest = min(_CROP_SIDE[1], right - left, bottom - top)
            for index in range(count):
                side = int(rng.integers(_CROP_SIDE[0], largest + 1))
                x = int(rng.integers(left, right - side + 1))
                y = int(rng.integers(top, bottom - side + 1))
                crop = Image.fromarray(photos[photo][y : y + side, x : x + side])
                if rng.random() < 0.5:
                    crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                crop = crop.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
                crop.save(folder / f"{index:03d}.jpg", quality=90)
        splits[split] = root / split
    return splits


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """The full CIFAR-10 JPEG folders (``train/``, ``test/``), extracted once to the cache.

    Skips without the archives; fails instead when ``CONTRASTIVE_REQUIRE_CIFAR10=1``.
    """
    if not cifar10_archives_present():
        message = (
            f"CIFAR-10 archives (train.tar.gz, test.tar.gz) not found in {default_archive_dir()}"
        )
        if cifar10_required():
            pytest.fail(f"{message}, and {REQUIRE_CIFAR10} is set", pytrace=False)
        pytest.skip(message)
    return ensure_cifar10()


@pytest.fixture(scope="session")
def cifar10_small(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """30 train and 10 test 32 px JPEGs in each of 10 class folders (300 / 100 images).

    Real CIFAR-10 when its archives are there (or required); otherwise crops of
    scikit-learn's sample photographs (:func:`write_photo_crop_folders`).
    """
    base = tmp_path_factory.mktemp("cifar10_small")
    if not (cifar10_archives_present() or cifar10_required()):
        return write_photo_crop_folders(base, {"train": 30, "test": 10})
    cifar10 = request.getfixturevalue("cifar10_root")
    return {
        "train": subset(cifar10 / "train", base / "train", per_class=30, seed=0),
        "test": subset(cifar10 / "test", base / "test", per_class=10, seed=0),
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder as training writes it: config.yaml and backbone.pt (16 px input)."""
    run = tmp_path / "run"
    run.mkdir()
    backbone_config = BackboneConfig("resnet18_quarter")
    config = {
        "views": ViewConfig(input_size=16).to_dict(),
        "backbone": {"name": backbone_config.name, "small_image_stem": False},
        "method": {"name": "simclr"},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(7)
    backbone, _ = build_backbone(backbone_config)
    torch.save(backbone.state_dict(), run / "backbone.pt")
    return run


#: The loggers :func:`contrastive.console.show_messages` sets up.
CONSOLE_LOGGERS = ("contrastive", "pytorch_lightning", "lightning.pytorch")


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """contrastive's logger as in a fresh notebook; every logger touched is put back."""
    saved = {
        name: (logging.getLogger(name).level, logging.getLogger(name).propagate)
        for name in CONSOLE_LOGGERS
    }
    monkeypatch.setattr(logging.getLogger("contrastive"), "handlers", [])
    logging.getLogger("contrastive").setLevel(logging.NOTSET)
    logging.getLogger("lightning.pytorch").setLevel(logging.INFO)  # as Lightning sets it
    with warnings.catch_warnings():
        yield
    for name, (level, propagate) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).propagate = propagate
