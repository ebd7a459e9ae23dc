"""What ``contrastive train`` says when it ends: what backbone.pt is, and stale exports."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from contrastive.backbone_config import BackboneConfig
from contrastive.cli.train import _warn_stale_exports, _weights_kind


def test_backbone_pt_is_called_torchvision_only_where_torchvision_builds_it() -> None:
    assert _weights_kind(BackboneConfig("resnet18")) == "plain torchvision state_dict"
    assert _weights_kind(BackboneConfig("timm:resnet50d")) == "plain timm state_dict"
    # The CPU plans' networks: torchvision's resnet18() would refuse these weights.
    for config in (BackboneConfig("resnet10_quarter"), BackboneConfig("resnet18", True)):
        assert _weights_kind(config).startswith(f"state_dict of contrastive's {config.name}")


def test_exports_older_than_the_final_weights_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run one"
    (run / "export").mkdir(parents=True)
    backbone = run / "backbone.pt"
    for name in ("backbone.onnx", "backbone.onnx.json", "fresh.onnx"):
        (run / "export" / name).write_bytes(b"x")
    backbone.write_bytes(b"weights")
    written = backbone.stat().st_mtime
    for name, age in (("backbone.onnx", 60), ("backbone.onnx.json", 60), ("fresh.onnx", -5)):
        os.utime(run / "export" / name, (written - age, written - age))
    with caplog.at_level(logging.WARNING):
        _warn_stale_exports(run, backbone)
    assert "holds 1 export(s) made before this training ended (backbone.onnx)" in caplog.text
    assert f"contrastive export '{run}'" in caplog.text
    caplog.clear()
    os.utime(run / "export" / "backbone.onnx", (written + 1, written + 1))
    _warn_stale_exports(run, backbone)
    assert caplog.text == ""


def test_a_config_of_another_run_says_what_it_does_not_re_create(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import argparse

    import yaml
    from PIL import Image

    from contrastive.cli.train import _note_config_source
    from contrastive.training.config import TrainConfig
    from contrastive.training.data_record import write_record

    images = tmp_path / "images"
    images.mkdir()
    for index in range(3):
        Image.new("RGB", (8, 8)).save(images / f"{index}.png")
    source = tmp_path / "budget run"
    source.mkdir()
    recorded = {"data": str(images), "time_budget": "40s", "max_steps": 220}
    (source / "config.yaml").write_text(yaml.safe_dump(recorded))
    write_record(source, ["0.png", "1.png", "2.png", "gone.png"])
    args = argparse.Namespace(config=str(source / "config.yaml"), recipe="auto", resume=False)
    config = TrainConfig(data=str(images), out=str(tmp_path / "again"))
    with caplog.at_level(logging.INFO):
        folder = _note_config_source(args, config, None)
    assert folder is not None and len(folder) == 3  # the scan, for the run to reuse
    assert "is of a --time-budget 40s run: this trains its final 220 steps" in caplog.text
    assert "1 removed, 0 added (4 -> 3 images)" in caplog.text
    caplog.clear()
    write_record(source, ["0.png", "1.png", "2.png"])
    recorded.pop("time_budget")
    (source / "config.yaml").write_text(yaml.safe_dump(recorded))
    with caplog.at_level(logging.INFO):
        _note_config_source(args, config, None)
    # The same images, an --epochs run: re-created as it was; only the scan is announced.
    assert [record.message.split(" ")[0] for record in caplog.records] == ["found"]


def test_a_sampled_run_says_how_much_of_the_folder_it_trained_on(tmp_path: Path) -> None:
    from PIL import Image

    from contrastive.cli.train import _images_trained
    from contrastive.data.folder import ImageFolder
    from contrastive.training.config import TrainConfig

    for index in range(5):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{index}.png")
    folder = ImageFolder.scan(tmp_path)
    config = TrainConfig(data=str(tmp_path), max_images=3)
    # Before: "trained on 3 images", as if two had been lost.
    assert _images_trained(3, config, folder) == (
        "3 of the folder's 5 images (a seeded sample: max_images=3 in config.yaml)"
    )
    # No sample: the count alone, also where unreadable files left fewer images.
    for unsampled in (TrainConfig(data=str(tmp_path)), config.with_overrides(max_images=5)):
        assert _images_trained(4, unsampled, folder) == "4 images"
    assert _images_trained(1234, TrainConfig(data=str(tmp_path)), None) == "1,234 images"
