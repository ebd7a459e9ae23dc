"""The embedding loader: worker count chosen per folder, page-locked batches only for a GPU."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import contrastive.embeddings as embeddings_module
from contrastive.cli.embed import add_compute_arguments
from contrastive.data.folder import ImageFolder
from contrastive.embeddings import (
    embed_folder,
    extract_features,
    image_loader,
    loader_workers,
)
from contrastive.encoder import EncoderFeatures
from contrastive.errors import ContrastiveError
from contrastive.hardware import MAX_AUTO_WORKERS
from contrastive.views.config import ViewConfig

VIEWS = ViewConfig(input_size=16)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """10 images in two classes."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(5):
            pixels = rng.integers(0, 256, (18, 18, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    return tmp_path


@pytest.mark.parametrize(
    ("cores", "batches", "expected"),
    [
        (2, 1, 0),  # one batch: nothing to overlap, no worker started
        (2, 2, 1),
        (2, 100, 2),
        (16, 3, 2),
        (64, 1000, MAX_AUTO_WORKERS),
    ],
)
def test_automatic_workers(
    monkeypatch: pytest.MonkeyPatch, cores: int, batches: int, expected: int
) -> None:
    monkeypatch.setattr(embeddings_module, "usable_cores", lambda: cores)

    assert loader_workers(None, batches) == expected


def test_requested_workers_are_kept_and_checked() -> None:
    assert loader_workers(0, 100) == 0
    assert loader_workers(3, 1) == 3
    with pytest.raises(ContrastiveError, match=r"^--num-workers must be 0 or more, got -1$"):
        loader_workers(-1, 10)


def test_cli_default_chooses_and_a_number_is_kept() -> None:
    parser = argparse.ArgumentParser()
    add_compute_arguments(parser)

    assert parser.parse_args([]).num_workers is None
    assert parser.parse_args(["--num-workers", "3"]).num_workers == 3


def test_loader_uses_the_chosen_workers(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings_module, "usable_cores", lambda: 4)
    scanned = ImageFolder.scan(folder)

    assert image_loader(scanned, VIEWS, batch_size=4, num_workers=None).num_workers == 2
    assert image_loader(scanned, VIEWS, batch_size=16, num_workers=None).num_workers == 0


@pytest.mark.parametrize(("device", "pinned"), [("cpu", False), ("cuda", True), ("cuda:1", True)])
def test_batches_are_pinned_only_for_a_gpu(
    folder: Path, monkeypatch: pytest.MonkeyPatch, device: str, pinned: bool
) -> None:
    seen: list[bool] = []

    class StopHereError(Exception):
        pass

    def spy(*args: object, pin_memory: bool = False, **kwargs: object) -> None:
        seen.append(pin_memory)
        raise StopHereError  # the loader is all this test needs; no GPU is touched

    monkeypatch.setattr(embeddings_module, "image_loader", spy)
    with pytest.raises(StopHereError):
        embed_folder(folder, VIEWS, {"f": torch.nn.Flatten()}, device=device, progress=False)

    assert seen == [pinned]


def test_workers_give_the_same_embeddings(folder: Path) -> None:
    torch.manual_seed(0)
    model = EncoderFeatures(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()))

    alone = embed_folder(folder, VIEWS, {"f": model}, batch_size=3, num_workers=0, progress=False)
    pooled = embed_folder(folder, VIEWS, {"f": model}, batch_size=3, num_workers=2, progress=False)

    np.testing.assert_array_equal(alone["f"].embeddings, pooled["f"].embeddings)
    np.testing.assert_array_equal(alone["f"].paths, pooled["f"].paths)


def test_reduced_decode_previews_large_jpegs_at_the_evaluation_size(tmp_path: Path) -> None:
    y, x = np.mgrid[0:600, 0:800]
    pixels = np.stack([x * 255 // 800, y * 255 // 600, (x + y) % 256], axis=-1).astype(np.uint8)
    (tmp_path / "photos").mkdir()
    Image.fromarray(pixels).save(tmp_path / "photos" / "a.jpg", quality=95)
    folder = ImageFolder.scan(tmp_path / "photos")
    views = ViewConfig(input_size=64)  # resized to 73 px, cropped to 64
    whole = next(iter(image_loader(folder, views)))[0]
    reduced_loader = image_loader(folder, views, reduced_decode=True)
    reduced = next(iter(reduced_loader))[0]
    assert reduced_loader.dataset.min_side == 73  # never decoded below the resize
    assert whole.shape == reduced.shape == (1, 3, 64, 64)
    # Normalised values: a few grey levels apart (std ~0.225 per 1.0 of intensity).
    assert (whole - reduced).abs().mean() < 4 / 255 / 0.225


@pytest.mark.parametrize(("full_decode", "min_side"), [(False, 73), (True, None)])
def test_embedding_decodes_large_jpegs_at_reduced_scale_unless_asked(
    folder: Path, monkeypatch: pytest.MonkeyPatch, full_decode: bool, min_side: int | None
) -> None:
    made = []
    original = embeddings_module.image_loader

    def recording_loader(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        loader = original(*args, **kwargs)
        made.append(loader.dataset.min_side)
        return loader

    monkeypatch.setattr(embeddings_module, "image_loader", recording_loader)
    extractor = EncoderFeatures(torch.nn.Flatten())
    embed_folder(folder, ViewConfig(input_size=64), {"f": extractor}, full_decode=full_decode)
    # Before: every image whole (19.5 s against 2.4 s on 300 phone photos).
    assert made == [min_side]


class _CountingImages(torch.utils.data.Dataset):
    """Eight tiny images; every fetch appends a line to a file (workers are processes)."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        with open(self.log, "a") as file:
            file.write(f"{index}\n")
        return torch.zeros(3, 4, 4), 0, index


class _SlowFlatten(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Slow enough that an idle second set of workers would have prefetched meanwhile.
        time.sleep(0.2)
        return images.flatten(1)


@pytest.mark.parametrize("progress", [True, False])
def test_each_image_is_decoded_once_with_workers(tmp_path: Path, progress: bool) -> None:
    log = tmp_path / "fetches.txt"
    loader = torch.utils.data.DataLoader(_CountingImages(log), batch_size=2, num_workers=1)

    features, indices = extract_features(loader, {"flat": _SlowFlatten()}, progress=progress)

    assert indices.tolist() == list(range(8))
    assert features["flat"].shape == (8, 48)
    assert sorted(int(line) for line in log.read_text().split()) == list(range(8))
