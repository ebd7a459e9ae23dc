"""Every training data path trains: decoded cache (default), per-epoch decoding, per-image views."""

from __future__ import annotations

import importlib
import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive.errors import ContrastiveError, user_message
from contrastive.training.config import TrainConfig
from contrastive.training.data import SKIP_LOG
from contrastive.training.train import train


@pytest.mark.parametrize(
    ("pipeline", "cache_images"),
    [("batched", True), ("batched", False), ("per_image", True)],
    ids=["decoded-cache", "decode-each-epoch", "per-image-views"],
)
def test_each_data_path_trains_every_step(
    tiny_config: TrainConfig, pipeline: str, cache_images: bool
) -> None:
    config = tiny_config.with_overrides(view_pipeline=pipeline, cache_images=cache_images)
    result = train(config)
    assert result.module.global_step == result.num_images // config.batch_size >= 2
    weights = result.backbone.state_dict().values()
    assert all(torch.isfinite(value).all() for value in weights if value.is_floating_point())
    assert (result.run_dir / "backbone.pt").is_file()


def test_max_images_trains_on_a_seeded_sample(tiny_config: TrainConfig) -> None:
    result = train(tiny_config.with_overrides(max_images=16))
    assert result.num_images == 16
    assert result.module.global_step == 16 // tiny_config.batch_size


def _with_broken_files(source: Path, target: Path, broken: int) -> Path:
    shutil.copytree(source, target)
    for index in range(broken):
        (target / "a" / f"broken{index}.jpg").write_bytes(b"not a jpeg at all")
    return target


def test_the_decoded_cache_finds_unreadable_files_without_a_header_pass(
    tiny_config: TrainConfig, tiny_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cache decodes every file before training: the per-file header check (11.5 s on
    # 100,000 images) is not run, and a broken file is still skipped and listed.
    def no_header_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("check_readable ran on the decoded-cache path")

    module = importlib.import_module("contrastive.training.train")  # not the function
    monkeypatch.setattr(module, "check_readable", no_header_pass)
    data = _with_broken_files(tiny_images, tmp_path / "images", broken=1)
    config = tiny_config.with_overrides(data=str(data), cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="broken0.jpg"):
        result = train(config)
    assert result.num_images == 32
    (listed,) = (result.run_dir / "skipped_files.txt").read_text().splitlines()
    path, reason = listed.split("\t")
    assert path == str(data / "a" / "broken0.jpg")
    assert reason.startswith("UnidentifiedImageError: cannot identify image file")
    # Over the tolerated fraction (5 of 37 > 10%): a one-line error naming the files.
    data = _with_broken_files(tiny_images, tmp_path / "worse", broken=5)
    config = config.with_overrides(data=str(data), out=str(tmp_path / "run2"))
    with (
        pytest.warns(UserWarning),
        pytest.raises(ContrastiveError, match=r"5 of 37 images .* cannot be read.*broken0.jpg"),
    ):
        train(config)


def test_a_batch_of_every_image_is_refused_when_one_cannot_be_read(
    tiny_config: TrainConfig, tiny_images: Path, tmp_path: Path
) -> None:
    # 33 files, batch 33 (a tiny folder's plan takes every image), one unreadable: the
    # budget probe's loader was empty and stopped with a StopIteration traceback.
    data = _with_broken_files(tiny_images, tmp_path / "images", broken=1)
    config = tiny_config.with_overrides(
        data=str(data), cache_dir=str(tmp_path / "cache"), batch_size=33
    )
    with (
        pytest.warns(UserWarning, match="broken0.jpg"),
        pytest.raises(
            ContrastiveError,
            match=r"^batch size 33 is larger than the data set \(32 images in .*images, 1 of "
            r"its files unreadable\); use --batch-size 32 or less$",
        ),
    ):
        train(config)


def test_a_step_limit_is_reached_when_the_cache_leaves_files_out(
    tiny_config: TrainConfig, tiny_images: Path, tmp_path: Path
) -> None:
    # 33 files in batches of 3 are 11 steps an epoch, the 32 readable ones 10: the step
    # limit (what a budget plan or --resume sets) of 21 took 2 epochs of 10 and ended at 20.
    data = _with_broken_files(tiny_images, tmp_path / "images", broken=1)
    config = tiny_config.with_overrides(
        data=str(data), cache_dir=str(tmp_path / "cache"), batch_size=3, max_steps=21
    )
    with pytest.warns(UserWarning, match="broken0.jpg"):
        result = train(config)
    assert result.module.global_step == 21


def test_per_image_path_lists_a_late_decode_failure_with_its_reason(
    tiny_config: TrainConfig, tiny_images: Path, tmp_path: Path
) -> None:
    # A truncated JPEG passes the header check and fails only when decoded in the loop:
    # skipped_files.txt still carries PIL's error, not a generic placeholder.
    data = tmp_path / "images"
    shutil.copytree(tiny_images, data)
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "JPEG", quality=95)
    (data / "a" / "truncated.jpg").write_bytes(buffer.getvalue()[: buffer.tell() // 2])
    config = tiny_config.with_overrides(
        data=str(data), view_pipeline="per_image", cache_images=False
    )
    # The warning of the loop, not of the header check: the failure is a late one.
    with pytest.warns(UserWarning, match="skipping unreadable image .*truncated.jpg"):
        result = train(config)
    (listed,) = (result.run_dir / "skipped_files.txt").read_text().splitlines()
    path, reason = listed.split("\t")
    assert path == str(data / "a" / "truncated.jpg")
    assert reason.startswith("OSError: ") and "runcated" in reason, reason


def test_one_image_is_refused_before_training(tiny_config: TrainConfig, tmp_path: Path) -> None:
    # One image has no other image to tell its views from: nothing to learn, so no run.
    folder = tmp_path / "one"
    folder.mkdir()
    only = next(p for p in sorted(Path(tiny_config.data).rglob("*")) if p.is_file())
    shutil.copy(only, folder / f"only{only.suffix}")
    config = tiny_config.with_overrides(data=str(folder), batch_size=2)
    with pytest.raises(ContrastiveError, match=r"at least 2 images; found 1 in .*one$"):
        train(config)
    assert not Path(config.out).exists()


def test_a_folder_of_too_many_unreadable_images_is_refused_leaving_no_run_folder(
    tiny_config: TrainConfig, tmp_path: Path
) -> None:
    data = tmp_path / "half_bad"
    shutil.copytree(tiny_config.data, data)
    images = sorted(path for path in data.rglob("*") if path.is_file())
    for number in range(len(images)):
        (data / "a" / f"broken{number}.png").write_bytes(b"not an image")
    config = tiny_config.with_overrides(data=str(data))  # the decoded cache's check

    with pytest.raises(ContrastiveError, match=r"cannot be read, more than --max-bad-fraction"):
        train(config)

    # Before: the folder stayed, holding the lock, the run marker and train.log.
    assert not Path(config.out).exists()


def _truncated_jpeg(path: Path, seed: int) -> None:
    """A JPEG whose header verifies but whose body ends halfway: it fails only when decoded."""
    buffer = io.BytesIO()
    noise = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: buffer.tell() // 2])


@pytest.mark.parametrize(
    ("pipeline", "cache_images"),
    [("batched", False), ("per_image", False)],
    ids=["decode-each-epoch", "per-image-views"],
)
def test_late_decode_failures_in_workers_are_listed_counted_and_limited(
    tiny_config: TrainConfig,
    tiny_images: Path,
    tmp_path: Path,
    pipeline: str,
    cache_images: bool,
) -> None:
    # Decoded in DataLoader workers, whose memory the main process never sees: the skip
    # reaches skipped_files.txt and the image count through the run folder's skip log.
    data = tmp_path / "images"
    shutil.copytree(tiny_images, data)
    _truncated_jpeg(data / "a" / "truncated.jpg", seed=0)
    config = tiny_config.with_overrides(
        data=str(data), view_pipeline=pipeline, cache_images=cache_images, num_workers=2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(config)
    (listed,) = (result.run_dir / "skipped_files.txt").read_text().splitlines()
    assert listed.startswith(f"{data / 'a' / 'truncated.jpg'}\tOSError: ")
    assert result.num_images == 32  # of 33 listed
    assert not (result.run_dir / SKIP_LOG).exists()

    # A folder of mostly truncated files stops in its first epoch, in one line.
    worse = tmp_path / "worse"
    (worse / "a").mkdir(parents=True)
    for index in range(30):
        _truncated_jpeg(worse / "a" / f"t{index}.jpg", seed=index)
    for image in sorted((tiny_images / "a").iterdir())[:10]:
        shutil.copy2(image, worse / "a" / image.name)
    config = config.with_overrides(data=str(worse), out=str(tmp_path / "run2"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ContrastiveError) as error:
            train(config)
    message = user_message(error.value)
    assert "cannot be decoded, more than --max-bad-fraction 0.1 (max_bad_fraction)" in message
