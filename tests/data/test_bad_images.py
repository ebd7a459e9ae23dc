"""The generated hostile corpus through listing, decoding, the readability check and the dataset."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive.data.folder import (
    ImageDataset,
    check_readable,
    list_images,
    load_rgb,
    read_skip_log,
)
from contrastive.errors import ContrastiveError, user_message

from .conftest import BLUE, RED, BadImageCorpus

DECODABLE_CASES = [
    "rgb_jpeg",
    "palette_transparent_png",
    "rgba_png",
    "rgb_colour_key_png",
    "gray16_png",
    "cmyk_jpeg",
    "grayscale_jpeg",
    "one_pixel_png",
    "exif_orientation_6_jpeg",
    "exif_orientation_8_jpeg",
    "space_in_name",
    "non_ascii_name",
    "non_utf8_name",
    "inside_folder_named_like_image",
]
UNDECODABLE_CASES = [
    "zero_bytes",
    "truncated_jpeg",
    "truncated_png",
    "text_named_jpg",
    "decompression_bomb_png",
]
# JPEG bodies are not checked by ``Image.verify``; only a full decode finds the truncation.
MISSED_BY_VERIFY = {"truncated_jpeg"}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


def test_corpus_covers_the_listed_cases(bad_image_corpus: BadImageCorpus) -> None:
    assert sorted(bad_image_corpus.decodable) == sorted(DECODABLE_CASES)
    assert sorted(bad_image_corpus.undecodable) == sorted(UNDECODABLE_CASES)


def test_list_images_lists_each_regular_image_file_once(
    bad_image_corpus: BadImageCorpus,
) -> None:
    listed = list_images(bad_image_corpus.root)

    assert len(listed) == len(set(listed))
    assert set(listed) == set(bad_image_corpus.image_files)
    assert not set(listed) & set(bad_image_corpus.not_listed.values())


@pytest.mark.parametrize("case", DECODABLE_CASES)
def test_load_rgb_decodes_every_decodable_case(bad_image_corpus: BadImageCorpus, case: str) -> None:
    image = load_rgb(bad_image_corpus.decodable[case])

    assert image.mode == "RGB"
    assert pixels(image).shape[2] == 3


@pytest.mark.parametrize("case", UNDECODABLE_CASES)
def test_load_rgb_raises_on_every_undecodable_case(
    bad_image_corpus: BadImageCorpus, case: str
) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the type depends on PIL's plugin
        load_rgb(bad_image_corpus.undecodable[case])


def test_palette_transparency_is_composited_on_white(bad_image_corpus: BadImageCorpus) -> None:
    image = load_rgb(bad_image_corpus.decodable["palette_transparent_png"])

    assert pixels(image).tolist() == [[[255, 255, 255], [0, 255, 0]]]


def test_alpha_channel_is_composited_on_white(bad_image_corpus: BadImageCorpus) -> None:
    image = load_rgb(bad_image_corpus.decodable["rgba_png"])

    assert pixels(image).tolist() == [[[255, 255, 255], [0, 0, 255]]]


def test_transparent_colour_key_is_composited_on_white(bad_image_corpus: BadImageCorpus) -> None:
    image = load_rgb(bad_image_corpus.decodable["rgb_colour_key_png"])

    assert pixels(image).tolist() == [[[255, 255, 255], [1, 2, 3]]]


def test_16_bit_grayscale_is_rescaled_not_clipped(bad_image_corpus: BadImageCorpus) -> None:
    path = bad_image_corpus.decodable["gray16_png"]
    with Image.open(path) as raw:
        assert raw.mode == "I;16"

    image = load_rgb(path)

    assert pixels(image)[0].tolist() == [[0] * 3, [100] * 3, [128] * 3, [255] * 3]


def test_cmyk_is_converted(bad_image_corpus: BadImageCorpus) -> None:
    path = bad_image_corpus.decodable["cmyk_jpeg"]
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"

    image = pixels(load_rgb(path))

    assert np.abs(image[:, :2] - 255).max() <= 4  # no ink: white
    assert image[:, 2:].max() <= 4  # full black ink: black


def test_grayscale_gives_three_equal_channels(bad_image_corpus: BadImageCorpus) -> None:
    image = pixels(load_rgb(bad_image_corpus.decodable["grayscale_jpeg"]))

    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    assert abs(int(image[0, 0, 0]) - 90) <= 2


def test_one_pixel_image_loads(bad_image_corpus: BadImageCorpus) -> None:
    image = load_rgb(bad_image_corpus.decodable["one_pixel_png"])

    assert image.size == (1, 1)
    assert image.getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_applied(bad_image_corpus: BadImageCorpus, orientation: int) -> None:
    path = bad_image_corpus.decodable[f"exif_orientation_{orientation}_jpeg"]
    with Image.open(path) as raw:
        assert raw.size == (64, 32)
        assert _closest(raw.convert("RGB").getpixel((4, 4))) == BLUE

    image = load_rgb(path)

    assert image.size == (32, 64)
    assert _closest(image.getpixel((4, 4))) == RED
    assert _closest(image.getpixel((28, 60))) == BLUE


def _closest(colour: tuple[int, ...]) -> tuple[int, int, int]:
    """RED or BLUE, whichever ``colour`` is nearer to after JPEG compression."""
    return min((RED, BLUE), key=lambda c: sum((a - b) ** 2 for a, b in zip(c, colour)))


def test_odd_names_round_trip(bad_image_corpus: BadImageCorpus) -> None:
    listed = set(list_images(bad_image_corpus.root))

    for case in ("space_in_name", "non_ascii_name", "non_utf8_name"):
        assert bad_image_corpus.decodable[case] in listed
    assert os.fsencode(bad_image_corpus.decodable["non_utf8_name"]).endswith(b"caf\xe9.png")


def black_squares(folder: Path, *sides: int) -> list[Path]:
    """Black RGB PNGs ``<side>x<side>.png`` in ``folder``, one per side, for pixel limits."""
    paths = []
    for side in sides:
        paths.append(folder / f"{side}x{side}.png")
        Image.new("RGB", (side, side)).save(paths[-1])
    return paths


def test_over_the_pixel_limit_is_unreadable_even_where_pil_only_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    at_limit, over_limit = black_squares(tmp_path, 10, 12)
    with pytest.warns(Image.DecompressionBombWarning), Image.open(over_limit):
        pass  # 144 pixels is between 1x and 2x the limit: PIL alone would decode it

    assert load_rgb(at_limit).size == (10, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(Image.DecompressionBombError, match="limit of 100"):
            load_rgb(over_limit)
    with pytest.warns(UserWarning, match="12x12.png"):
        good, skipped = check_readable([at_limit, over_limit], max_bad_fraction=0.5)
    assert good == [at_limit] and list(skipped) == [over_limit]


def test_raising_the_pixel_limit_allows_large_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (path,) = black_squares(tmp_path, 12)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)

    assert load_rgb(path).size == (12, 12)


def test_dataset_skips_undecodable_files_with_a_warning_naming_each(
    bad_image_corpus: BadImageCorpus,
) -> None:
    dataset = ImageDataset(list_images(bad_image_corpus.root))

    with pytest.warns(UserWarning) as record:
        samples = [dataset[i] for i in range(len(dataset))]

    assert all(image.mode == "RGB" for image, _label, _index in samples)
    returned = {dataset.paths[index] for _image, _label, index in samples}
    assert returned == set(bad_image_corpus.decodable.values())
    messages = "\n".join(str(w.message) for w in record)
    for path in bad_image_corpus.undecodable.values():
        assert str(path) in messages
    assert set(dataset.skipped) == {str(p) for p in bad_image_corpus.undecodable.values()}
    # Each skipped file keeps PIL's reason, the line skipped_files.txt will carry.
    for path, reason in dataset.skipped.items():
        assert reason.split(":")[0].endswith(("Error", "Exception")), (path, reason)
        assert reason in messages


def test_dataloader_epoch_completes_over_bad_files(bad_image_corpus: BadImageCorpus) -> None:
    def to_tensor(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image.resize((4, 4))).copy())

    dataset = ImageDataset(list_images(bad_image_corpus.root), transform=to_tensor)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True)

    with pytest.warns(UserWarning, match="skipping unreadable image"):
        seen = sum(len(batch) for batch, _labels, _indices in loader)

    assert seen == len(dataset)


def test_dataset_with_nothing_readable_raises_a_clear_error(
    bad_image_corpus: BadImageCorpus,
) -> None:
    dataset = ImageDataset(list(bad_image_corpus.undecodable.values()))

    with pytest.warns(UserWarning), pytest.raises(ContrastiveError, match="none of the 5") as info:
        dataset[0]
    # One example names the first file tried and PIL's reason for it.
    first = str(dataset.paths[0])
    assert f"e.g. {first} ({dataset.skipped[first]})" in str(info.value)


def test_check_readable_skips_what_verify_can_see(bad_image_corpus: BadImageCorpus) -> None:
    listed = list_images(bad_image_corpus.root)
    expected_bad = {
        bad_image_corpus.undecodable[c] for c in UNDECODABLE_CASES if c not in MISSED_BY_VERIFY
    }

    with pytest.warns(UserWarning, match=f"skipping {len(expected_bad)} of {len(listed)}"):
        good, skipped = check_readable(listed, max_bad_fraction=0.5)

    assert set(skipped) == expected_bad
    assert good == [p for p in listed if p not in expected_bad]
    assert all(reason and "\n" not in reason for reason in skipped.values())


def test_check_readable_with_decode_finds_truncated_jpegs(
    bad_image_corpus: BadImageCorpus,
) -> None:
    with pytest.warns(UserWarning):
        _good, skipped = check_readable(
            list_images(bad_image_corpus.root), max_bad_fraction=0.5, decode=True
        )

    assert set(skipped) == set(bad_image_corpus.undecodable.values())
    assert "truncated" in skipped[bad_image_corpus.undecodable["truncated_jpeg"]]


def test_check_readable_fails_over_the_bad_fraction(bad_image_corpus: BadImageCorpus) -> None:
    listed = list_images(bad_image_corpus.root)

    with pytest.raises(
        ContrastiveError,
        match=rf"4 of {len(listed)} images .* cannot be read, "
        r"more than --max-bad-fraction 0.1 \(max_bad_fraction\) allows: .*and 1 more",
    ):
        check_readable(listed, max_bad_fraction=0.1)


def test_a_refusal_names_three_bad_files_and_logs_every_one_for_v(
    bad_image_corpus: BadImageCorpus, caplog: pytest.LogCaptureFixture
) -> None:
    listed = list_images(bad_image_corpus.root)

    with (
        caplog.at_level(logging.DEBUG, logger="contrastive.data.folder"),
        pytest.raises(ContrastiveError) as raised,
    ):
        check_readable(listed, max_bad_fraction=0.1)

    # Before: three named, "and 1 more", and no way to see the fourth.
    assert str(raised.value).endswith("and 1 more (-v lists all 4)")
    logged = [record.getMessage() for record in caplog.records if record.levelname == "DEBUG"]
    unreadable = [line for line in logged if line.startswith("cannot read ")]
    assert len(unreadable) == 4
    assert len({line.split(" (")[0] for line in unreadable}) == 4


def test_check_readable_fails_when_nothing_is_readable(
    bad_image_corpus: BadImageCorpus,
) -> None:
    with pytest.raises(ContrastiveError, match="none of the 5 images can be read"):
        check_readable(bad_image_corpus.undecodable.values(), max_bad_fraction=1.0, decode=True)


def test_unreadable_file_is_skipped(
    bad_image_corpus: BadImageCorpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root reads chmod-000 files anyway, so the permission failure is simulated at open.
    locked = bad_image_corpus.decodable["rgb_jpeg"]
    real_open = Image.open

    def open_denying_locked(path: object, *args: object, **kwargs: object) -> Image.Image:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", open_denying_locked)
    others = [bad_image_corpus.decodable[c] for c in ("rgba_png", "gray16_png")]

    with pytest.warns(UserWarning, match="Permission denied"):
        good, skipped = check_readable([locked, *others], max_bad_fraction=0.5)
    assert good == others and list(skipped) == [locked]
    with pytest.warns(UserWarning, match=f"skipping unreadable image {locked}"):
        _image, _label, index = ImageDataset([locked, *others])[0]
    assert index == 1


def test_chmod_000_file_is_skipped(bad_image_corpus: BadImageCorpus) -> None:
    locked = bad_image_corpus.decodable["rgb_jpeg"]
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running with privileges that ignore file permissions (root)")
        with pytest.warns(UserWarning, match="Permission denied"):
            _good, skipped = check_readable(
                [locked, bad_image_corpus.decodable["rgba_png"]], max_bad_fraction=0.5
            )
        assert list(skipped) == [locked]
    finally:
        locked.chmod(0o644)


def test_both_of_pils_pixel_limit_cases_give_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONTRASTIVE_MAX_IMAGE_PIXELS", raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    # 144 pixels: PIL only warns; 400 pixels, over twice the limit: PIL raises, its way.
    for side, path in zip((12, 20), black_squares(tmp_path, 12, 20)):
        with pytest.raises(Image.DecompressionBombError) as raised:
            load_rgb(path)
        assert str(raised.value) == (
            f"{side}x{side}.png has {side * side} pixels, over the limit of 100 (set "
            "CONTRASTIVE_MAX_IMAGE_PIXELS to a larger pixel count, or to 0 for no limit, "
            "to read it)"
        )


def test_the_pixel_limit_variable_sets_or_lifts_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restored afterwards: the variable also sets PIL's own limit, which PIL checks on open.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    small, large = black_squares(tmp_path, 12, 20)
    for unlimited in ("0", "none", " None "):
        monkeypatch.setenv("CONTRASTIVE_MAX_IMAGE_PIXELS", unlimited)
        assert load_rgb(large).size == (20, 20)
    monkeypatch.setenv("CONTRASTIVE_MAX_IMAGE_PIXELS", "1000")
    assert load_rgb(large).size == (20, 20)  # over twice PIL's own limit, under this one
    monkeypatch.setenv("CONTRASTIVE_MAX_IMAGE_PIXELS", "150")
    assert load_rgb(small).size == (12, 12)
    with pytest.raises(Image.DecompressionBombError, match="has 400 pixels, over the limit of 150"):
        load_rgb(large)
    # A bad value is a setting to fix, not a bad file to skip.
    monkeypatch.setenv("CONTRASTIVE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ContrastiveError, match="CONTRASTIVE_MAX_IMAGE_PIXELS='lots'"):
        check_readable([small, large])
    with pytest.raises(ContrastiveError, match="CONTRASTIVE_MAX_IMAGE_PIXELS='lots'"):
        ImageDataset([small])[0]


def test_worker_skips_reach_the_main_process_through_the_skip_log(
    bad_image_corpus: BadImageCorpus, tmp_path: Path
) -> None:
    def to_tensor(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image.resize((4, 4))).copy())

    log = tmp_path / "skips.tsv"
    dataset = ImageDataset(list_images(bad_image_corpus.root), transform=to_tensor, skip_log=log)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list(loader)

    assert dataset.skipped == {}  # the workers' copies held them
    skipped = read_skip_log(log)
    assert set(skipped) == set(bad_image_corpus.undecodable.values())
    assert all(reason for reason in skipped.values())
    assert read_skip_log(tmp_path / "none.tsv") == {}


def test_a_process_that_alone_saw_too_many_bad_files_stops(
    bad_image_corpus: BadImageCorpus,
) -> None:
    paths = list_images(bad_image_corpus.root)
    bad = len(bad_image_corpus.undecodable)
    dataset = ImageDataset(paths, max_bad_fraction=(bad - 1) / len(paths))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ContrastiveError, match=f"at least {bad} of {len(paths)} images"):
            [dataset[i] for i in range(len(paths))]
    # At the allowance exactly, the epoch goes on.
    dataset = ImageDataset(paths, max_bad_fraction=bad / len(paths))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len([dataset[i] for i in range(len(paths))]) == len(paths)


def test_a_worker_error_prints_as_its_own_line() -> None:
    wrapped = ContrastiveError(
        "Caught ContrastiveError in DataLoader worker process 0.\nOriginal Traceback (most "
        'recent call last):\n  File "x.py", line 1\ncontrastive.errors.ContrastiveError: '
        "at least 3 of 4 images cannot be decoded\n"
    )
    assert user_message(wrapped) == "at least 3 of 4 images cannot be decoded"
    assert user_message(ContrastiveError("plain")) == "plain"
