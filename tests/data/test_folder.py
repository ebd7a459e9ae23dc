"""Listing, labelling and converting images in ordinary (well-formed) folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrastive.data.folder import (
    BIT_DEPTH_VARIABLE,
    IMAGE_EXTENSIONS,
    ImageDataset,
    ImageFolder,
    class_of,
    list_images,
    load_rgb,
    sample_paths,
    to_rgb,
)
from contrastive.data.image_files import RUN_MARKER
from contrastive.errors import ContrastiveError


def make_image(path: Path, colour: tuple[int, int, int] = (0, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path)
    return path


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    """``cat/`` with two images, ``dog/deep/`` with one, one flat image, one text file."""
    make_image(tmp_path / "cat" / "b.png")
    make_image(tmp_path / "cat" / "a.JPG")
    make_image(tmp_path / "dog" / "deep" / "c.webp")
    make_image(tmp_path / "flat.bmp")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


def test_list_images_is_recursive_sorted_and_case_insensitive(class_folders: Path) -> None:
    listed = [p.relative_to(class_folders).as_posix() for p in list_images(class_folders)]

    assert listed == ["cat/a.JPG", "cat/b.png", "dog/deep/c.webp", "flat.bmp"]


def test_a_long_scan_says_how_far_it_is(
    class_folders: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import contrastive.data.folder as folder_module

    # A million files take ~50 s to list; the first line must not wait for the end.
    monkeypatch.setattr(folder_module, "SCAN_PROGRESS_IMAGES", 2)
    with caplog.at_level(logging.INFO, logger="contrastive.data.folder"):
        list_images(class_folders)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        f"looking for images in {class_folders}: 2 so far",
        f"looking for images in {class_folders}: 4 so far",
    ]


def test_list_images_returns_absolute_paths(
    class_folders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(class_folders)

    assert all(p.is_absolute() for p in list_images("."))


def test_list_images_rejects_missing_and_non_folder_roots(tmp_path: Path) -> None:
    with pytest.raises(ContrastiveError, match="does not exist"):
        list_images(tmp_path / "missing")
    with pytest.raises(ContrastiveError, match="not a folder"):
        list_images(make_image(tmp_path / "x.png"))


def test_scan_of_a_folder_without_images_names_the_extensions(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")

    with pytest.raises(ContrastiveError, match=r"no images found in .*\.jpg"):
        ImageFolder.scan(tmp_path)


def test_ignored_files_are_counted_by_extension_in_one_warning(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "kept.png")
    (tmp_path / "scan.pdf").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "more.TXT").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "sub" / "README").write_text("x")
    with pytest.warns(UserWarning) as caught:
        paths = list_images(tmp_path)
    assert [p.name for p in paths] == ["kept.png"]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "ignored 5 non-image file(s)" in messages[0] and str(tmp_path) in messages[0]
    assert "1 .DS_Store, 1 .pdf, 2 .txt, 1 no extension" in messages[0]


def test_an_animated_gif_is_read_as_its_first_frame_on_white(tmp_path: Path) -> None:
    palette = [255, 0, 0, 0, 0, 255, 0, 0, 0] + [0] * (256 * 3 - 9)
    frames = []
    for colour in (0, 1):
        frame = Image.new("P", (4, 4), colour)
        frame.putpalette(palette)
        frame.putpixel((0, 0), 2)
        frames.append(frame)
    path = tmp_path / "moving.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], transparency=2)

    assert list_images(tmp_path) == [path.absolute()]
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (4, 4)
    assert image.getpixel((1, 1)) == (255, 0, 0)
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_labels_come_from_the_first_folder_level(class_folders: Path) -> None:
    folder = ImageFolder.scan(class_folders)

    labels, classes = folder.labels()

    assert classes == ["cat", "dog"]
    assert labels.tolist() == [0, 0, 1, -1]
    assert folder.relative_paths()[2] == "dog/deep/c.webp"
    assert class_of(folder.paths[3], folder.root) is None


def test_extensions_are_lower_case_with_dot() -> None:
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 77, (77, 77, 77)),
        ("1", 1, (255, 255, 255)),
        ("LA", (77, 0), (255, 255, 255)),
        ("LA", (77, 255), (77, 77, 77)),
        ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
        ("I", 200, (200, 200, 200)),
        ("I", 65535, (255, 255, 255)),
        ("F", 127.6, (128, 128, 128)),
    ],
)
def test_to_rgb_converts_each_mode(mode: str, value: object, expected: tuple[int, ...]) -> None:
    image = to_rgb(Image.new(mode, (2, 2), value))

    assert image.mode == "RGB"
    assert image.getpixel((1, 1)) == expected


def test_to_rgb_returns_rgb_images_unchanged() -> None:
    image = Image.new("RGB", (2, 2), (1, 2, 3))

    assert to_rgb(image) is image


def test_dataset_returns_transformed_sample_label_and_index(class_folders: Path) -> None:
    folder = ImageFolder.scan(class_folders)
    labels, _classes = folder.labels()
    dataset = ImageDataset(folder.paths, transform=lambda im: np.asarray(im).shape, labels=labels)

    assert len(dataset) == 4
    assert dataset[2] == ((4, 4, 3), 1, 2)
    assert ImageDataset(folder.paths)[3][1:] == (-1, 3)


def test_dataset_rejects_a_label_count_mismatch(class_folders: Path) -> None:
    paths = list_images(class_folders)

    with pytest.raises(ContrastiveError, match="got 3 labels for 4 images"):
        ImageDataset(paths, labels=[0, 1, 2])


def test_dataset_does_not_hide_transform_errors(class_folders: Path) -> None:
    def broken(_image: Image.Image) -> None:
        raise ZeroDivisionError("bug in the transform")

    with pytest.raises(ZeroDivisionError):
        ImageDataset(list_images(class_folders), transform=broken)[0]


def test_samples_are_seeded_nested_and_keep_the_folder_order() -> None:
    paths = [Path(f"/images/{index:04d}.jpg") for index in range(1000)]
    small, large = sample_paths(paths, 100, seed=3), sample_paths(paths, 300, seed=3)
    assert len(small) == 100 and len(set(large)) == 300
    assert small == sorted(small) and set(small) <= set(large)
    assert sample_paths(paths, 100, seed=3) == small
    assert sample_paths(paths, 100, seed=4) != small
    assert sample_paths(paths, 5000) == paths


def test_macos_metadata_files_are_ignored_not_counted_as_bad_images(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "photo.jpg")
    (tmp_path / "._photo.jpg").write_bytes(b"\x00\x05\x16\x07Mac OS X        ")
    with pytest.warns(UserWarning, match=r"1 \._ \(macOS metadata\)"):
        paths = list_images(tmp_path)
    assert [p.name for p in paths] == ["photo.jpg"]


def test_hidden_image_named_files_are_passed_over_as_hidden_folders_are(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "photo.jpg")
    Image.new("RGB", (4, 4)).save(tmp_path / ".thumbnail.jpg")  # a tool's, not the user's
    (tmp_path / ".hidden.jpg").write_bytes(b"not an image")  # was an "unreadable image"
    with pytest.warns(UserWarning, match=r"2 hidden \(\.\*\) image-named file"):
        paths = list_images(tmp_path)
    assert [p.name for p in paths] == ["photo.jpg"]


def test_a_run_folder_inside_the_data_is_not_data(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "photo.jpg")
    run = tmp_path / "runs" / "first"
    (run / "tensorboard").mkdir(parents=True)
    (run / RUN_MARKER).write_text("x")
    Image.new("RGB", (4, 4)).save(run / "tensorboard" / "sprite.png")
    with pytest.warns(UserWarning) as caught:
        paths = list_images(tmp_path)
    assert [p.name for p in paths] == ["photo.jpg"]
    # A run folder is named as such, not counted among non-image files.
    assert [str(w.message).split(" in ")[0] for w in caught] == [
        "ignored 1 run folder(s) of contrastive"
    ]
    # The run folder itself, given as the data, is scanned as asked.
    assert [p.name for p in list_images(run)] == ["sprite.png"]


def test_linked_folders_are_followed_once_and_broken_links_are_named(tmp_path: Path) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (data / "a").mkdir(parents=True)
    elsewhere.mkdir()
    Image.new("RGB", (4, 4)).save(data / "a" / "photo.jpg")
    Image.new("RGB", (4, 4)).save(elsewhere / "other.jpg")
    # A class folder that is a link (a split made of links), a loop, and a broken link.
    (data / "b").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "back").symlink_to(data, target_is_directory=True)
    (data / "a" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    with pytest.warns(UserWarning) as caught:
        folder = ImageFolder.scan(data)
    # Before: only a/photo.jpg, and "did not follow 1 linked folder(s)".
    assert folder.relative_paths() == ["a/photo.jpg", "b/other.jpg"]
    assert folder.labels()[1] == ["a", "b"]
    messages = [str(w.message) for w in caught]
    assert any(
        f"scanned 1 linked folder(s) in {data} once only" in m and str(data / "b" / "back") in m
        for m in messages
    )
    assert any("ignored 1 non-image file(s)" in m and "1 broken link" in m for m in messages)


def test_hidden_and_system_folders_are_not_searched_and_named_in_one_warning(
    tmp_path: Path,
) -> None:
    make_image(tmp_path / "cat" / "a.png")
    # Copies of the data (notebook checkpoints, a macOS zip's AppleDouble twins, Synology
    # thumbnails) and a repository's files: none of it is data, nor a class.
    make_image(tmp_path / ".ipynb_checkpoints" / "a-checkpoint.png")
    make_image(tmp_path / "cat" / ".ipynb_checkpoints" / "a-checkpoint.png")
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "objects" / "pack.png").write_bytes(b"x\x9c" + bytes(50))
    make_image(tmp_path / "__MACOSX" / "cat" / "a.png")
    make_image(tmp_path / "cat" / "@eaDir" / "a.png" / "SYNOFILE_THUMB_M.jpg")
    with pytest.warns(UserWarning) as caught:
        folder = ImageFolder.scan(tmp_path)
    assert folder.relative_paths() == ["cat/a.png"]
    assert folder.labels()[1] == ["cat"]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert f"ignored 5 hidden or system folder(s) in {tmp_path}" in messages[0]
    assert "not searched: .git, .ipynb_checkpoints, __MACOSX and 2 more" in messages[0]


def test_hidden_folders_share_the_one_line_with_ignored_files(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    make_image(tmp_path / ".thumbnails" / "a.png")
    with pytest.warns(UserWarning) as caught:
        paths = list_images(tmp_path)
    assert [p.name for p in paths] == ["a.png"]
    assert [str(w.message) for w in caught] == [
        f"ignored 1 non-image file(s) in {tmp_path}: 1 .txt (images are "
        f"{', '.join(sorted(IMAGE_EXTENSIONS))}); ignored 1 hidden or system folder(s) "
        "(names starting with '.', @eaDir, __MACOSX), not searched: .thumbnails"
    ]


def test_a_hidden_folder_given_as_the_data_is_scanned(tmp_path: Path) -> None:
    make_image(tmp_path / ".data" / "cat" / "a.png")

    assert [p.name for p in list_images(tmp_path / ".data")] == ["a.png"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifos_and_device_links_named_like_images_are_counted_not_opened(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png")
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it for reading would block forever
    if Path("/dev/zero").exists():
        (tmp_path / "zero.png").symlink_to("/dev/zero")  # reading it would never end
    with pytest.warns(UserWarning) as caught:
        paths = list_images(tmp_path)
    assert [p.name for p in paths] == ["a.png"]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "1 FIFO" in messages[0]
    if Path("/dev/zero").exists():
        assert "ignored 2 non-image file(s)" in messages[0] and "1 device file" in messages[0]


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        # A 12-bit sensor in a 16-bit PNG: scaled by 4095, not 65535.
        ("I;16", [0, 2048, 4095], [0, 128, 255]),
        # 10- and 14-bit data likewise; 8-bit data stored in 16 bits keeps its values.
        ("I;16", [0, 512, 1023], [0, 128, 255]),
        ("I;16", [0, 16383], [0, 255]),
        ("I;16", [0, 100, 255], [0, 100, 255]),
        # Mode I: 255 and 256 are both small integers, 8 and 10 bits (not 8 and 16).
        ("I", [0, 255], [0, 255]),
        ("I", [0, 256], [0, 64]),
        # Negative integers: the image's own range.
        ("I", [-1000, 0, 1000], [0, 128, 255]),
        # Floats in [0, 1] scale by 255; other ranges by the image's min..max.
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),
        ("F", [-1.0, 0.0, 1.0], [0, 128, 255]),
        ("F", [0.0, 1000.0, 2000.0], [0, 128, 255]),
        ("F", [float("nan"), float("-inf"), 0.0, 0.5, float("inf")], [0, 0, 0, 128, 255]),
    ],
)
def test_high_bit_depth_images_are_rescaled_by_one_rule(
    tmp_path: Path, mode: str, values: list[float], expected: list[int]
) -> None:
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    # uint16 arrays give mode I;16 by themselves (and refuse it as an argument).
    raw = Image.fromarray(np.array([values], dtype=dtype), mode=None if mode == "I;16" else mode)
    path = tmp_path / ("image.png" if mode == "I;16" else "image.tif")
    raw.save(path)
    with Image.open(path) as stored:
        assert stored.mode == mode

    image = load_rgb(path)

    assert np.asarray(image)[0, :, 0].tolist() == expected
    assert np.asarray(image).std(axis=2).max() == 0  # grey stays grey


def test_a_fixed_bit_depth_reads_every_frame_of_a_sensor_at_one_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = []
    for peak in (1000, 1100):  # two dim 12-bit frames
        paths.append(tmp_path / f"max{peak}.png")
        Image.fromarray(np.array([[0, 500, peak]], dtype=np.uint16)).save(paths[-1])
    guessed = [np.asarray(load_rgb(path))[0, :, 0].tolist() for path in paths]
    # Per image: 1000 fits 10 bits, 1100 needs 12, so the brighter frame reads darker.
    assert guessed == [[0, 125, 249], [0, 31, 68]]
    monkeypatch.setenv(BIT_DEPTH_VARIABLE, "12")
    fixed = [np.asarray(load_rgb(path))[0, :, 0].tolist() for path in paths]
    assert fixed == [[0, 31, 62], [0, 31, 68]]
    monkeypatch.setenv(BIT_DEPTH_VARIABLE, "twelve")
    with pytest.raises(ContrastiveError, match=r"CONTRASTIVE_BIT_DEPTH='twelve' is not a bit"):
        load_rgb(paths[0])


def test_transparency_becomes_white_or_the_visible_pixels_mean() -> None:
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[0, 0] = (200, 100, 0, 255)
    pixels[0, 1] = (0, 100, 200, 255)
    image = Image.fromarray(pixels)
    assert to_rgb(image).getpixel((1, 1)) == (255, 255, 255)
    assert to_rgb(image, background="opaque_mean").getpixel((1, 1)) == (100, 100, 100)
    assert to_rgb(image, background="opaque_mean").getpixel((0, 0)) == (200, 100, 0)
