"""Tiny learnable data and tiny models for the method tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.losses import LossConfig
from contrastive.methods import MethodConfig, build_method

#: The losses every method is trained with.
LOSS_CASES = [
    LossConfig("ntxent"),
    LossConfig("distance", distance="cosine"),
    LossConfig("distance", distance="euclidean"),
]
LOSS_IDS = ["ntxent", "distance-cosine", "distance-euclidean"]


def smooth_images(count: int, size: int = 40, seed: int = 0) -> torch.Tensor:
    """``count`` distinct smooth colour patterns (5x5 noise upsampled), ``(count, 3, s, s)``."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 5, 5, generator=generator)
    return nn.functional.interpolate(
        coarse, size=(size, size), mode="bilinear", align_corners=False
    )


def crop_flip(images: torch.Tensor, generator: torch.Generator, crop: int = 32) -> torch.Tensor:
    """One random ``crop`` x ``crop`` crop and random horizontal flip per image."""
    _, _, height, width = images.shape
    views = []
    for image in images:
        top = int(torch.randint(0, height - crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - crop + 1, (1,), generator=generator))
        view = image[:, top : top + crop, left : left + crop]
        if torch.rand((), generator=generator) < 0.5:
            view = view.flip(-1)
        views.append(view)
    return torch.stack(views)


def make_method(name: str, loss: LossConfig, **config: object) -> nn.Module:
    """A method around a ``resnet18_quarter`` backbone, 32-d projections."""
    backbone, feature_dim = build_backbone(BackboneConfig("resnet18_quarter"))
    options = {"projection_output_dim": 32, "queue_size": 16, **config}
    return build_method(MethodConfig(name, **options), loss, backbone, feature_dim)


def two_views(images: torch.Tensor, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [crop_flip(images, generator), crop_flip(images, generator)]


def loss_ratio(losses: list[float]) -> float:
    """Mean of the last 8 losses over the mean of steps 4-11 (two passes over the 4 batches;
    from step 4 on, MoCo's queue holds real keys, not its random initial vectors)."""
    return (sum(losses[-8:]) / 8) / (sum(losses[4:12]) / 8)


def train_losses(
    method: nn.Module,
    steps: int = 64,
    batch_size: int = 16,
    learning_rate: float = 0.02,
    seed: int = 0,
) -> list[float]:
    """Plain SGD on 64 fixed images in 4 batches of 16, fresh crops/flips every step.

    64 steps, so that learning stands clear of the step-to-step noise: averaged over 8
    steps, seeds 0-2 of every method and loss ended at 0.49-0.82 of their early loss, and
    the same runs at learning rate 0 at 0.98-1.05 (an AVX2-only CPU, fp32; after 24 steps
    one seed had reached only 0.97, and a run at learning rate 0 reached 0.95).
    Four batches (not one) so that MoCo's one-batch queue holds keys of *other* images.
    """
    images = smooth_images(4 * batch_size, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.SGD(
        [p for p in method.parameters() if p.requires_grad], lr=learning_rate
    )
    losses = []
    for step in range(steps):
        batch = images[(step % 4) * batch_size : (step % 4 + 1) * batch_size]
        views = [crop_flip(batch, generator), crop_flip(batch, generator)]
        loss = method.training_loss(views, progress=step / steps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: these tiny convolutions only lose time to thread hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def images() -> torch.Tensor:
    """Eight 40 px smooth images."""
    return smooth_images(8)


@pytest.fixture
def method_factory() -> Callable[..., nn.Module]:
    """``method_factory(name, loss, **config)``, seeded."""

    def factory(name: str, loss: LossConfig, **config: object) -> nn.Module:
        torch.manual_seed(0)
        return make_method(name, loss, **config)

    return factory


@pytest.fixture
def views_of() -> Callable[..., list[torch.Tensor]]:
    return two_views


@pytest.fixture
def train() -> Callable[..., list[float]]:
    return train_losses
