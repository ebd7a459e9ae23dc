"""Every training data path trains: decoded cache (default), per-epoch decoding, per-image views."""

from __future__ import annotations

import pytest
import torch

from contrastive.training.config import TrainConfig
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
