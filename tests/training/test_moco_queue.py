"""MoCo's queue is sized for the data set: a queue as large as the folder holds each image's
own older key among its negatives."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import yaml

from contrastive.methods.config import MethodConfig
from contrastive.training.config import TrainConfig
from contrastive.training.train import TrainResult, train


def _moco_run(
    config: TrainConfig, caplog: pytest.LogCaptureFixture, **method: object
) -> tuple[TrainResult, int]:
    """The run of ``config`` as MoCo, and the size of its queue."""
    config = replace(
        config, method=MethodConfig("moco", **method), health_sample_size=0, projector_sample_size=0
    )
    with caplog.at_level(logging.INFO):
        result = train(config)
    return result, result.module.method.criterion.memory_bank.size[0]


def test_unset_queue_is_a_quarter_of_the_images_and_recorded(
    tiny_config: TrainConfig, caplog: pytest.LogCaptureFixture
) -> None:
    result, queue = _moco_run(tiny_config, caplog)
    # 32 images: 8 keys, not MoCo v2's 4,096 (128 copies of each image's key).
    assert queue == 8
    recorded = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert recorded["method"]["queue_size"] == 8
    assert "MoCo queue: 8 keys, a quarter of the 32 images" in caplog.text
    assert "--queue-size" in caplog.text


def test_a_set_queue_as_large_as_the_images_is_kept_with_a_warning(
    tiny_config: TrainConfig, caplog: pytest.LogCaptureFixture
) -> None:
    _, queue = _moco_run(tiny_config, caplog, queue_size=64)
    assert queue == 64
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("--queue-size 64 is more than the 32 images" in m for m in warned), warned
    assert any("8, a quarter of them" in m for m in warned), warned


def test_a_resumed_run_keeps_its_queue_without_warning_again(
    tiny_config: TrainConfig, caplog: pytest.LogCaptureFixture
) -> None:
    _moco_run(tiny_config, caplog, queue_size=64)
    caplog.clear()
    longer = replace(tiny_config, epochs=2)
    with caplog.at_level(logging.INFO):
        result = train(replace(longer, method=MethodConfig("moco", queue_size=64)), resume=True)
    assert result.module.method.criterion.memory_bank.size[0] == 64
    # Before: the warning about --queue-size came again on every resume, no flag given.
    assert "--queue-size" not in caplog.text


def test_a_small_set_queue_is_neither_changed_nor_warned_about(
    tiny_config: TrainConfig, caplog: pytest.LogCaptureFixture
) -> None:
    _, queue = _moco_run(tiny_config, caplog, queue_size=4)
    assert queue == 4
    assert "MoCo queue" not in caplog.text
    assert "--queue-size" not in caplog.text
