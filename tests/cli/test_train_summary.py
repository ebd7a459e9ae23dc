"""What ``contrastive train`` says when it ends: what backbone.pt is, and stale exports."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from contrastive.backbones import BackboneConfig
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
