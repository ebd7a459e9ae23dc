"""MoCo through build_method: learns, momentum encoder, momentum schedule and update, queue."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from lightly.loss import NTXentLoss
from torch import nn

from contrastive.errors import ContrastiveError
from contrastive.losses import DistanceContrastiveLoss, LossConfig
from contrastive.methods import MethodConfig, MoCo, build_method, default_queue_size

from .conftest import LOSS_CASES, LOSS_IDS, loss_ratio

MOMENTUM_PARTS = ("momentum_backbone", "momentum_projection_head")
QUERY_PARTS = ("backbone", "projection_head")


def parameters_of(method: nn.Module, parts: tuple[str, ...]) -> list[torch.Tensor]:
    return [p for part in parts for p in getattr(method, part).parameters()]


@pytest.mark.parametrize("loss", LOSS_CASES, ids=LOSS_IDS)
def test_loss_goes_down(loss: LossConfig, method_factory: Callable, train: Callable) -> None:
    method = method_factory("moco", loss, momentum_start=0.9, momentum_end=0.9)
    losses = train(method)
    assert loss_ratio(losses) < 0.9, losses


@pytest.mark.parametrize("loss", LOSS_CASES, ids=LOSS_IDS)
def test_gradients_reach_query_encoder_not_momentum_encoder(
    loss: LossConfig, method_factory: Callable, images: torch.Tensor, views_of: Callable
) -> None:
    method = method_factory("moco", loss)
    method.training_loss(views_of(images), progress=0.0).backward()
    trainable = dict(method.named_parameters())
    assert any(n.startswith("backbone.") for n in trainable)
    assert any(n.startswith("projection_head.") for n in trainable)
    for name, parameter in trainable.items():
        if name.startswith(MOMENTUM_PARTS):
            assert not parameter.requires_grad, name
            assert parameter.grad is None, name
        else:
            assert parameter.requires_grad, name
            assert parameter.grad is not None, name
            assert torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().sum() > 0, name


def test_momentum_encoder_starts_as_a_copy() -> None:
    method = build_method(MethodConfig("moco"), LossConfig(), nn.Linear(4, 6), feature_dim=6)
    for query, key in zip(
        parameters_of(method, QUERY_PARTS), parameters_of(method, MOMENTUM_PARTS), strict=True
    ):
        assert torch.equal(query, key)
        assert query is not key


@pytest.mark.parametrize("progress", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_momentum_schedule_is_cosine_from_start_to_end(progress: float) -> None:
    method = build_method(
        MethodConfig("moco", momentum_start=0.5, momentum_end=0.9),
        LossConfig(),
        nn.Flatten(),
        feature_dim=12,
    )
    # end - (end - start) (cos(pi p) + 1) / 2: p = 0 -> 0.5, p = 0.5 -> 0.7, p = 1 -> 0.9
    expected = 0.9 - 0.4 * (math.cos(math.pi * progress) + 1) / 2
    assert method.momentum(progress) == pytest.approx(expected, abs=1e-4)
    if progress in (0.0, 1.0):
        assert method.momentum(progress) == expected  # exactly start and end


@pytest.mark.parametrize("progress", [0.0, 0.4, 1.0])
def test_momentum_update_is_exponential_moving_average(
    progress: float, images: torch.Tensor, views_of: Callable
) -> None:
    torch.manual_seed(0)
    method = build_method(
        MethodConfig(
            "moco", momentum_start=0.6, momentum_end=0.8, projection_output_dim=8, queue_size=16
        ),
        LossConfig(),
        nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)),
        feature_dim=10,
    )
    with torch.no_grad():  # make the query encoder differ from its momentum copy
        for parameter in parameters_of(method, QUERY_PARTS):
            parameter.add_(torch.randn_like(parameter))
    old = [p.clone() for p in parameters_of(method, MOMENTUM_PARTS)]
    new = [p.clone() for p in parameters_of(method, QUERY_PARTS)]
    m = method.momentum(progress)
    assert m == pytest.approx(0.8 - 0.2 * (math.cos(math.pi * progress) + 1) / 2, abs=1e-4)

    method.training_loss(views_of(images), progress=progress)

    for before, query, after in zip(old, new, parameters_of(method, MOMENTUM_PARTS), strict=True):
        torch.testing.assert_close(after, m * before + (1 - m) * query)
        assert not torch.allclose(after, before)


@pytest.mark.parametrize("loss", LOSS_CASES, ids=LOSS_IDS)
def test_queue_receives_the_normalised_keys(
    loss: LossConfig, method_factory: Callable, images: torch.Tensor, views_of: Callable
) -> None:
    method = method_factory("moco", loss, queue_size=20)
    bank = method.criterion.memory_bank
    before = bank.bank.clone()
    views = views_of(images)
    method.training_loss(views, progress=0.3)
    # The momentum update runs before the keys are computed and batch norm uses batch
    # statistics in training mode, so the same forward pass gives the same keys.
    with torch.no_grad():
        keys = method.momentum_projection_head(method.momentum_backbone(views[1]))
    batch = images.shape[0]
    assert int(bank.bank_ptr) == batch
    torch.testing.assert_close(bank.bank[:batch], nn.functional.normalize(keys, dim=1))
    torch.testing.assert_close(bank.bank[batch:], before[batch:])


def test_queue_untouched_without_grad(
    method_factory: Callable, images: torch.Tensor, views_of: Callable
) -> None:
    method = method_factory("moco", LossConfig())
    before = method.criterion.memory_bank.bank.clone()
    with torch.no_grad():
        method.training_loss(views_of(images), progress=1.0)
    assert torch.equal(method.criterion.memory_bank.bank, before)
    assert int(method.criterion.memory_bank.bank_ptr) == 0


def test_ntxent_loss_is_infonce_against_the_queue(
    method_factory: Callable, images: torch.Tensor, views_of: Callable
) -> None:
    method = method_factory("moco", LossConfig("ntxent"), queue_size=24)
    assert type(method.criterion) is NTXentLoss
    assert method.criterion.memory_bank.size == (24, 32)
    assert method.criterion.temperature == 0.2
    queue = method.criterion.memory_bank.bank.clone()
    views = views_of(images)
    loss = method.training_loss(views, progress=0.0)
    with torch.no_grad():
        q = nn.functional.normalize(method.projection_head(method.backbone(views[0])), dim=1)
        k = nn.functional.normalize(
            method.momentum_projection_head(method.momentum_backbone(views[1])), dim=1
        )
    # -log softmax over [q.k+, q.queue] / tau, the positive at index 0
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / 0.2
    expected = nn.functional.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
    torch.testing.assert_close(loss.detach(), expected)


@pytest.mark.parametrize(
    ("loss", "expected_type", "expected_tau"),
    [
        (LossConfig("ntxent"), NTXentLoss, 0.2),
        (LossConfig("distance", temperature=0.3), DistanceContrastiveLoss, 0.3),
    ],
)
def test_build_method_criterion(loss: LossConfig, expected_type: type, expected_tau: float) -> None:
    method = build_method(
        MethodConfig("moco", queue_size=40, projection_output_dim=6),
        loss,
        nn.Flatten(),
        feature_dim=12,
    )
    assert isinstance(method, MoCo)
    assert type(method.criterion) is expected_type
    assert method.criterion.temperature == expected_tau
    assert method.criterion.memory_bank.size == (40, 6)


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"queue_size": 0}, "queue_size"),
        ({"momentum_start": 0.9, "momentum_end": 0.8}, "momentum"),
        ({"momentum_start": -0.1}, "momentum"),
        ({"momentum_end": 1.1}, "momentum"),
        ({"projection_output_dim": 0}, "projection_output_dim"),
    ],
)
def test_bad_method_config_raises(kwargs: dict, culprit: str) -> None:
    with pytest.raises(ContrastiveError, match=culprit):
        MethodConfig("moco", **kwargs)


@pytest.mark.parametrize(
    ("images", "expected"), [(1_000, 250), (16_384, 4096), (50_000, 4096), (3, 1), (0, 1)]
)
def test_default_queue_size_is_a_quarter_of_the_images_up_to_mocos(
    images: int, expected: int
) -> None:
    assert default_queue_size(images) == expected


def test_an_unplanned_queue_is_mocos_own(method_factory: Callable) -> None:
    method = method_factory("moco", LossConfig("ntxent"), queue_size=None)
    assert method.criterion.memory_bank.size[0] == 4096
