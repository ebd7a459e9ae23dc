"""Pixel-space near-copies: planted resized, JPEG q=20 and 5%-cropped copies are found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from sklearn.datasets import load_sample_images

from contrastive.data.near_copies import (
    DETAIL_MIN_SIDE,
    DETAIL_THRESHOLD,
    _detail_views,
    confirm_by_detail,
    detail_similarity,
    find_near_copies,
    image_fingerprints,
    near_copy_groups,
    near_copy_pairs,
)
from contrastive.errors import ContrastiveError


def originals(count: int = 9, side: int = 64) -> list[Image.Image]:
    """Distinct natural-image crops: a grid of windows over scikit-learn's two photos."""
    crops = []
    for photo in load_sample_images().images:
        for row in range(2):
            for column in range(3):
                top, left = 60 + row * 150, 40 + column * 170
                crops.append(Image.fromarray(photo[top : top + 120, left : left + 120]))
    # Textured crops only: a clear-sky crop is flat, and flat images match nothing by design.
    textured = [c for c in crops if np.asarray(c.convert("L"), dtype=float).std() > 20]
    return [crop.resize((side, side), Image.Resampling.BICUBIC) for crop in textured[:count]]


def planted_copies(image: Image.Image) -> dict[str, Image.Image]:
    """The three edits a leak goes through: resizing, low-quality JPEG, a 5% crop."""
    side = image.width
    margin = round(0.05 * side)
    return {
        "resized": image.resize((side // 2, side // 2), Image.Resampling.BILINEAR),
        "jpeg": image,  # saved below at quality 20
        "cropped": image.crop((margin, 0, side, side - margin)).resize((side, side)),
    }


@pytest.fixture
def planted(tmp_path: Path) -> dict[str, object]:
    """``train/``: 6 originals; ``test/``: copies of the first 2 plus 3 unrelated originals."""
    images = originals()
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    train_paths = []
    for index, image in enumerate(images[:6]):
        train_paths.append(train / f"{index:02d}.png")
        image.save(train_paths[-1])
    test_paths, leaked = [], []
    for index in range(2):
        for kind, copy in planted_copies(images[index]).items():
            path = test / f"copy{index}_{kind}.jpg"
            copy.save(path, quality=20 if kind == "jpeg" else 90)
            test_paths.append(path)
            leaked.append(len(test_paths) - 1)
    for index, image in enumerate(images[6:9]):
        test_paths.append(test / f"new{index}.png")
        image.save(test_paths[-1])
    return {"train": train_paths, "test": test_paths, "leaked": leaked}


def test_planted_copies_are_found_and_nothing_else(planted: dict[str, object]) -> None:
    pairs = find_near_copies(planted["test"], planted["train"])
    flagged = pairs.queries_with_copies(len(planted["test"]))
    assert torch.nonzero(flagged).flatten().tolist() == planted["leaked"]
    # Each copy points at its own original: copies 0-2 -> train 0, copies 3-5 -> train 1.
    assert pairs.reference.tolist() == [0, 0, 0, 1, 1, 1]
    assert bool((pairs.similarity >= 0.92).all())


def test_within_one_set_pairs_and_groups(planted: dict[str, object]) -> None:
    paths = [*planted["train"], *planted["test"]]
    pairs = find_near_copies(paths)
    assert bool((pairs.query < pairs.reference).all())
    groups = near_copy_groups(pairs, len(paths))
    # Original 0 with its three copies, original 1 with its three; nothing else groups.
    assert groups == [[0, 6, 7, 8], [1, 9, 10, 11]]


def test_flat_and_unreadable_images_match_nothing(tmp_path: Path) -> None:
    flat = tmp_path / "flat.png"
    Image.new("RGB", (20, 20), (90, 90, 90)).save(flat)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    fingerprints = image_fingerprints([flat, broken, flat])
    assert bool((fingerprints == 0).all())
    assert len(near_copy_pairs(fingerprints)) == 0


def test_bad_threshold_is_one_line_error() -> None:
    with pytest.raises(ContrastiveError, match="threshold"):
        near_copy_pairs(torch.zeros(2, 4), threshold=1.5)


def test_pictures_sharing_a_transparent_half_are_not_copies(tmp_path: Path) -> None:
    paths = []
    for index, image in enumerate(originals(6)):
        pixels = np.array(image.convert("RGBA"))
        pixels[:, : pixels.shape[1] // 2, 3] = 0  # a cut-out: the left half transparent
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(pixels).save(paths[-1])
    copy = tmp_path / "copy.png"
    Image.open(paths[0]).resize((40, 40)).save(copy)

    prints = image_fingerprints([*paths, copy])
    similarity = prints @ prints.T
    distinct = similarity[:6, :6][~torch.eye(6, dtype=torch.bool)]
    # Before (transparency as white): 0.92-0.99 between distinct pictures.
    assert float(distinct.max()) < 0.8
    assert float(similarity[0, 6]) > 0.98


def garment(pattern: str, side: int = 256) -> Image.Image:
    """A light shirt of one silhouette on a red background, printed with ``pattern``: the
    product photos on which distinct pictures share a 12 px fingerprint."""
    image = Image.new("RGB", (side, side), (150, 20, 40))
    mask = Image.new("L", (side, side), 0)
    outline = [(70, 40), (186, 40), (236, 90), (206, 120), (186, 100), (186, 220), (70, 220)]
    outline += [(70, 100), (50, 120), (20, 90)]
    ImageDraw.Draw(mask).polygon([(x * side / 256, y * side / 256) for x, y in outline], fill=255)
    y, x = np.mgrid[0:side, 0:side] * 256 // side
    print_ = {
        "horizontal": (y // 20) % 2,
        "vertical": (x // 20) % 2,
        "checks": ((x // 24) + (y // 24)) % 2,
        "blocks": np.random.default_rng(0).integers(0, 2, (16, 16))[y // 16, x // 16],
    }[pattern]
    shirt = np.repeat((190 + 60 * print_)[..., None], 3, axis=2).astype(np.uint8)
    image.paste(Image.fromarray(shirt), (0, 0), mask)
    return image


PRINTS = ("horizontal", "vertical", "checks", "blocks")


def test_look_alikes_of_one_silhouette_are_no_copies_of_each_other(tmp_path: Path) -> None:
    paths = []
    for pattern in PRINTS:
        paths.append(tmp_path / f"{pattern}.png")
        garment(pattern).save(paths[-1])
    candidates = near_copy_pairs(image_fingerprints(paths))
    # Their layout is one: the fingerprint pairs all six (cosine 0.99).
    assert len(candidates) == 6
    # Before: all six reported as copies (one duplicate group of four shirts).
    assert len(find_near_copies(paths)) == 0
    assert len(confirm_by_detail(candidates, paths)) == 0


def test_copies_of_large_images_keep_their_detail(tmp_path: Path) -> None:
    # Copies that stay at least DETAIL_MIN_SIDE pixels: 3/4 size, JPEG q=20, a 5% crop.
    paths = []
    for index, pattern in enumerate(PRINTS[:2]):
        image = garment(pattern)
        margin = round(0.05 * image.width)
        edits = {
            "png": (image, {}),
            "resized": (image.resize((192, 192), Image.Resampling.BILINEAR), {}),
            "jpeg": (image, {"quality": 20}),
            "cropped": (image.crop((margin, 0, 256, 256 - margin)).resize((256, 256)), {}),
        }
        for kind, (copy, options) in edits.items():
            paths.append(tmp_path / f"{index}_{kind}.{'jpg' if kind == 'jpeg' else 'png'}")
            copy.save(paths[-1], **options)
    groups = near_copy_groups(find_near_copies(paths), len(paths))
    assert sorted(sorted(group) for group in groups) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_pairs_with_a_small_image_are_left_as_the_fingerprint_found_them(
    tmp_path: Path,
) -> None:
    # At 64 px a JPEG copy's detail is its artefacts: no detail check below DETAIL_MIN_SIDE.
    paths = []
    for pattern in PRINTS[:2]:
        paths.append(tmp_path / f"{pattern}.png")
        garment(pattern, side=DETAIL_MIN_SIDE // 2).save(paths[-1])
    candidates = near_copy_pairs(image_fingerprints(paths))
    assert len(candidates) == 1
    assert len(confirm_by_detail(candidates, paths)) == 1


def test_detail_similarity_is_symmetric_and_one_for_an_image_and_its_shift() -> None:
    images = [garment(pattern) for pattern in PRINTS]
    shifted = Image.new("RGB", (256, 256), (150, 20, 40))
    shifted.paste(images[0], (8, 0))  # one detail pixel of 32 to the right
    thumbnails = torch.stack(
        [
            torch.from_numpy(
                np.asarray(image.resize((48, 48), Image.Resampling.BOX)).copy()
            ).permute(2, 0, 1)
            for image in [*images, shifted]
        ]
    )
    views = _detail_views(thumbnails)
    first, second = views[[0, 0, 1, 0]], views[[0, 1, 0, 4]]
    similarity = detail_similarity(first, second)
    assert similarity[0] == pytest.approx(1.0, abs=1e-5)
    assert similarity[1] == pytest.approx(float(similarity[2]), abs=1e-6)  # symmetric
    assert similarity[1] < DETAIL_THRESHOLD < similarity[3]
