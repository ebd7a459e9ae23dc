"""``compile=True`` (``--compile``): a torch.compile'd backbone runs every part of a run."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from contrastive.backbones import build_backbone
from contrastive.training.config import TrainConfig
from contrastive.training.train import train

# Inductor's CPU backend writes and builds C++ kernels.
needs_compiler = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("cc", "gcc", "clang")), reason="no C compiler"
)


@needs_compiler
def test_compiled_backbone_trains_and_embeds_at_the_end(tiny_config: TrainConfig) -> None:
    pytest.importorskip("tensorboard")
    config = replace(
        tiny_config,
        compile=True,
        logger="csv,tensorboard",
        health_sample_size=8,
        projector_sample_size=6,
    )
    result = train(config)
    # The projector embeds the final weights through the compiled backbone after training,
    # on torchvision's tv_tensors.Image batches (which compiled kernels refused).
    tensors = config.run_dir / "tensorboard" / "00000" / "embeddings" / "tensors.tsv"
    rows = [line.split("\t") for line in tensors.read_text().splitlines()]
    assert len(rows) == 6 and all(len(row) == result.module.feature_dim for row in rows)
    assert torch.isfinite(torch.tensor([[float(x) for x in row] for row in rows])).all()
    # The exported weights load into the plain, uncompiled network.
    exported = torch.load(result.backbone_path, weights_only=True)
    plain, _ = build_backbone(config.backbone)
    plain.load_state_dict(exported)
