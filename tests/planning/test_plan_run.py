"""``contrastive train --time-budget``: the planner on a real folder and this machine."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from contrastive.cli import main
from contrastive.data.folder import ImageFolder
from contrastive.errors import ContrastiveError
from contrastive.planning import FolderStats
from contrastive.planning.planner import REFERENCE, Candidate, Plan, candidate_flops
from contrastive.training.config import load_config_file


def write_images(root: Path, count: int, size: tuple[int, int], mode: str = "RGB") -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for index in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(root / f"{index:03d}.png")
    return root


def test_folder_stats_read_sizes_and_colour_from_headers(tmp_path: Path) -> None:
    colour = write_images(tmp_path / "a", 6, (80, 60))
    gray = write_images(tmp_path / "b", 2, (40, 100), mode="L")
    stats = FolderStats.from_paths(sorted([*colour.iterdir(), *gray.iterdir()]))
    assert (stats.num_images, stats.sampled) == (8, 8)
    assert stats.short_side_median == 60
    assert (stats.short_side_p10, stats.short_side_p90) == (40, 60)
    assert stats.grayscale_fraction == pytest.approx(2 / 8)
    assert "8 images" in stats.describe()
    with pytest.raises(ContrastiveError, match="empty"):
        FolderStats.from_paths([])
    assert stats.elongated_fraction == 0 and stats.elongated_warning() is None


def test_a_folder_of_panoramas_is_told_it_keeps_their_central_square(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wide = write_images(tmp_path / "images" / "wide", 3, (400, 40))  # 10:1
    write_images(tmp_path / "images" / "square", 5, (60, 50))
    stats = FolderStats.from_paths(ImageFolder.scan(tmp_path / "images").paths)
    assert stats.elongated_fraction == pytest.approx(3 / 8)
    assert "38% longer than 3:1" in stats.describe()
    assert "only their central square" in stats.elongated_warning()
    args = ["train", "--data", str(wide.parent), "--time-budget", "30s", "--plan-only"]
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    assert "38% of the images are longer than 3:1" in caplog.text


def test_views_much_larger_than_the_images_are_priced_with_the_flags_that_fit() -> None:
    cifar_like = FolderStats(
        num_images=100, sampled=100, short_side_median=32, short_side_p10=32,
        short_side_p90=32, median_pixels=32 * 32, grayscale_fraction=0.0,
    )  # fmt: skip
    warning = cifar_like.upscale_warning(224)
    assert "7.0x the images' short side (median 32 px)" in warning
    assert "49x the work per image of 32 px views" in warning  # (224 / 32) ** 2
    assert "--input-size 32 --small-image-stem" in warning
    assert cifar_like.upscale_warning(64) is None  # twice the side: within the rule
    planned = cifar_like.upscale_warning(128, planned=True)
    assert "16x the work" in planned and "without --input-size the plan sizes" in planned
    photos = FolderStats(
        num_images=100, sampled=100, short_side_median=96, short_side_p10=96,
        short_side_p90=96, median_pixels=96 * 96, grayscale_fraction=0.0,
    )  # fmt: skip
    assert "--input-size 96 fits" in photos.upscale_warning(224)  # no small stem at 96 px
    assert photos.upscale_warning(192) is None


def test_an_unplanned_run_on_small_images_warns_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import importlib

    training = importlib.import_module("contrastive.training.train")  # the module
    given: dict[str, object] = {}

    def fake_train(config: object, **kwargs: object) -> None:
        given.update(kwargs)
        raise KeyboardInterrupt  # what was said before training is the point

    monkeypatch.setattr(training, "train", fake_train)
    images = write_images(tmp_path / "images", 4, (32, 32))
    run = ["train", "--data", str(images), "--out", str(tmp_path / "run"), "--epochs", "1"]
    with caplog.at_level(logging.WARNING):
        assert main(run) == 130
    assert "views of 224 px are 7.0x the images' short side" in caplog.text
    assert len(given["folder"].paths) == 4  # the scan is the run's: one listing
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main([*run[:3], "--out", str(tmp_path / "run2"), "--input-size", "32"]) == 130
    assert "upscaled" not in caplog.text
    # A planned run keeps a view size the user set, and says what it costs.
    caplog.clear()
    plan = ["train", "--data", str(images), "--time-budget", "30s", "--plan-only"]
    with caplog.at_level(logging.WARNING):
        assert main([*plan, "--input-size", "128"]) == 0
    assert "views of 128 px are 4.0x the images' short side" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(plan) == 0
    assert "upscaled" not in caplog.text  # the plan's own views fit the images


def test_folder_stats_skip_images_over_the_pixel_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    small = write_images(tmp_path / "small", 2, (10, 10))
    # 15 x 15 is over twice the limit (PIL refuses), 12 x 12 between 1x and 2x (PIL warns).
    Image.new("RGB", (15, 15)).save(small / "bomb.png")
    Image.new("RGB", (12, 12)).save(small / "large.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = FolderStats.from_paths(sorted(small.iterdir()), decoded=0)
    assert (stats.num_images, stats.sampled, stats.short_side_median) == (4, 2, 10)


def test_folder_stats_time_decoding_on_the_folders_own_files(tmp_path: Path) -> None:
    # A 1500 x 1000 PNG (no reduced decoding) costs far more than a 32 px one.
    small = FolderStats.from_paths(sorted(write_images(tmp_path / "small", 4, (32, 32)).iterdir()))
    large = FolderStats.from_paths(
        sorted(write_images(tmp_path / "large", 2, (1500, 1000)).iterdir())
    )
    assert small.decode_seconds is not None and large.decode_seconds is not None
    assert 0 < small.decode_seconds < large.decode_seconds / 5
    assert (
        FolderStats.from_paths(sorted((tmp_path / "small").iterdir()), decoded=0).decode_seconds
        is None
    )


def test_plan_only_prints_the_plan_and_keeps_what_the_user_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    images = write_images(tmp_path / "images", 64, (48, 48))
    run_dir = tmp_path / "run"
    args = ["train", "--data", str(images), "--out", str(run_dir), "--accelerator", "cpu"]
    with caplog.at_level(logging.INFO):
        code = main([*args, "--time-budget", "30s", "--batch-size", "16", "--plan-only"])
    assert code == 0
    text = caplog.text
    assert "plan for 64 images, short side 48 px" in text
    assert "batch_size = 16: set by you" in text
    assert "views.input_size = " in text and "stored_size = " in text
    assert not (run_dir / "config.yaml").exists()  # a plan only: nothing trained or written
    assert main([*args, "--plan-only"]) == 2
    assert "--plan-only needs --time-budget" in capsys.readouterr().err


def test_plan_only_prints_the_planned_configuration_as_yaml_without_an_out(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = write_images(tmp_path / "images", 64, (48, 48))
    args = ["train", "--data", str(images), "--accelerator", "cpu", "--time-budget", "30s"]
    assert main([*args, "--batch-size", "16", "--plan-only"]) == 0
    planned = yaml.safe_load(capsys.readouterr().out)  # stdout is the plan, for a script
    assert planned["batch_size"] == 16 and planned["time_budget"] == "30s"
    assert planned["plan"]["batch_size"].startswith("16: set by you") and "out" not in planned
    # It is a configuration file training reads.
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(planned))
    assert load_config_file(tmp_path / "plan.yaml")["views"] == planned["views"]
    # Training still needs a folder to write.
    assert main(args) == 2
    assert "--out is required" in capsys.readouterr().err


def test_plan_only_refuses_a_folder_training_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = write_images(tmp_path / "images", 1, (48, 48))
    args = ["train", "--data", str(images), "--out", str(tmp_path / "run"), "--time-budget", "1m"]
    assert main([*args, "--plan-only"]) == 2
    error = capsys.readouterr().err
    assert "needs at least 2 images; found 1 in" in error and str(images) in error
    assert "plan for" not in error


def test_a_batch_larger_than_the_folder_is_refused_before_planning(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = write_images(tmp_path / "images", 6, (48, 48))
    monkeypatch.setattr(
        "contrastive.planning.plan_run.measured_rate",
        lambda *_a, **_k: pytest.fail("probed a plan that cannot run"),
    )
    args = ["train", "--data", str(images), "--out", str(tmp_path / "run"), "--time-budget", "1m"]
    assert main([*args, "--batch-size", "8", "--plan-only"]) == 2
    error = capsys.readouterr().err
    assert f"batch size 8 is larger than the data set (6 images in {images})" in error
    assert "use --batch-size 6 or less" in error


def flop_proportional_rate(config, hardware, max_seconds: float):
    """A probe that measures nothing: the cheapest network at 800 images/s, others in
    proportion to their FLOPs (the real probe runs in the other tests here)."""
    reference = candidate_flops(Candidate(*REFERENCE))
    return lambda candidate, batch_size, stored_size: 800.0 * reference / candidate_flops(candidate)


def test_a_planned_run_records_its_plan_in_config_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Without the probe's seconds the budget's share left for training does not depend on how
    # busy the machine is (a loaded CI machine spent the whole 20 s budget on probing).
    monkeypatch.setattr("contrastive.planning.plan_run.measured_rate", flop_proportional_rate)
    images = write_images(tmp_path / "images", 48, (40, 40))
    run_dir = tmp_path / "run"
    scans = []
    scan = ImageFolder.scan.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        ImageFolder, "scan", classmethod(lambda cls, root: scans.append(root) or scan(cls, root))
    )
    arguments = [
        "train",
        "--data",
        str(images),
        "--out",
        str(run_dir),
        "--accelerator",
        "cpu",
        "--time-budget",
        "30s",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert main(arguments) == 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    plan = saved["plan"]
    assert plan["batch_size"].startswith(f"{saved['batch_size']}: ")
    assert plan["views.input_size"].startswith(f"{saved['views']['input_size']}: ")
    assert saved["backbone"]["name"] == plan["backbone"].split(":")[0]
    assert saved["max_steps"] >= 1
    assert (run_dir / "backbone.pt").is_file()
    assert len(scans) == 1  # the folder is listed once, for the plan and the run
    assert "the first run decodes the folder" in plan["stored_size"]
    # The next plan finds the folder decoded at the planned size: nothing to decode.
    again = [*arguments[:3], "--out", str(tmp_path / "run2"), *arguments[5:], "--plan-only"]
    with caplog.at_level(logging.INFO):
        assert main(again) == 0
    assert "decoded by an earlier run: reused" in caplog.text


def test_init_weights_keep_the_architecture_they_fit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from contrastive.backbone_config import BackboneConfig
    from contrastive.encoder import recorded_backbone_config
    from contrastive.planning.plan_run import plan_run
    from contrastive.recipes import cpu_budget_recipe

    images = write_images(tmp_path / "images", 48, (96, 96))
    earlier = tmp_path / "earlier"
    (earlier / "checkpoints").mkdir(parents=True)
    recorded = {"name": "resnet18_half", "small_image_stem": True, "stem_stride": 2}
    (earlier / "config.yaml").write_text(yaml.safe_dump({"backbone": recorded}))
    expected = BackboneConfig(**recorded)
    for source in (earlier, earlier / "backbone.pt", earlier / "checkpoints" / "last.ckpt"):
        assert recorded_backbone_config(source) == expected
    assert recorded_backbone_config(tmp_path / "imagenet.pt") is None

    base = cpu_budget_recipe().with_overrides(
        data=str(images), time_budget="20s", accelerator="cpu"
    )
    with caplog.at_level(logging.INFO):
        config, plan = plan_run(base.with_overrides(init_weights=str(earlier / "backbone.pt")))
    assert config.backbone == expected
    # The weights fixed the network, not the user's flags: the plan says so.
    reasons = {line.split(" = ")[0].strip(): line for line in plan.lines()}
    assert "kept for --init-weights" in reasons["backbone"] and "set by you" not in reasons["stem"]
    # Said in words, not as a Python repr.
    assert "backbone.pt: resnet18_half, small-image stem with stride 2\n" in caplog.text + "\n"
    # Weights from elsewhere: the backbone the flags name is kept, not re-planned.
    config, _ = plan_run(base.with_overrides(init_weights=str(tmp_path / "imagenet.pt")))
    assert config.backbone == base.backbone


def test_time_spent_before_planning_is_not_planned_as_training(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    from contrastive.planning.plan_run import plan_run
    from contrastive.recipes import cpu_budget_recipe

    images = write_images(tmp_path / "images", 48, (48, 48))
    base = cpu_budget_recipe().with_overrides(
        data=str(images), time_budget="20s", accelerator="cpu"
    )
    # passes / (images/s) is proportional to the seconds planned for training, whatever
    # network the plan chose and however fast the probe measured it.
    _, whole = plan_run(base)
    _, half = plan_run(base, started=time.perf_counter() - 10.0)

    def planned_seconds(plan: Plan) -> float:
        return plan.passes / plan.images_per_second

    assert 0.4 < planned_seconds(half) / planned_seconds(whole) < 0.5 + 1e-6
    assert "nothing is left to train" not in caplog.text
    with caplog.at_level(logging.WARNING):
        _, late = plan_run(base, started=time.perf_counter() - 60.0)
    assert late.passes > 0  # a budget spent before planning still plans a (short) run
    # ... and says the run itself would refuse to start (--plan-only said nothing).
    assert "of the 20 s budget: nothing is left to train" in caplog.text
