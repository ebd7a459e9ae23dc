"""SimCLR through build_method: learns, gradients reach everything, symmetric, defaults."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from lightly.loss import NTXentLoss
from torch import nn

from contrastive.errors import ContrastiveError
from contrastive.losses import DistanceContrastiveLoss, LossConfig
from contrastive.methods import MethodConfig, SimCLR, build_method

from .conftest import LOSS_CASES, LOSS_IDS, loss_ratio


@pytest.mark.parametrize("loss", LOSS_CASES, ids=LOSS_IDS)
def test_loss_goes_down(loss: LossConfig, method_factory: Callable, train: Callable) -> None:
    losses = train(method_factory("simclr", loss))
    assert loss_ratio(losses) < 0.9, losses


@pytest.mark.parametrize("loss", LOSS_CASES, ids=LOSS_IDS)
def test_gradients_reach_every_trainable_parameter(
    loss: LossConfig, method_factory: Callable, images: torch.Tensor, views_of: Callable
) -> None:
    method = method_factory("simclr", loss)
    method.training_loss(views_of(images), progress=0.0).backward()
    names = [name for name, p in method.named_parameters() if p.requires_grad]
    assert any(n.startswith("backbone.") for n in names)
    assert any(n.startswith("projection_head.") for n in names)
    for name, parameter in method.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_loss_is_symmetric_in_the_two_views(
    method_factory: Callable, images: torch.Tensor, views_of: Callable
) -> None:
    # Batch-norm statistics are over both views together and NT-Xent is symmetric.
    method = method_factory("simclr", LossConfig("ntxent"))
    first, second = views_of(images)
    torch.testing.assert_close(
        method.training_loss([first, second], 0.0), method.training_loss([second, first], 0.0)
    )


def test_both_views_get_the_same_gradients_when_swapped(
    method_factory: Callable, images: torch.Tensor, views_of: Callable
) -> None:
    # The gradient that view a gets as the first view equals the one it gets as the second:
    # neither view is treated as a fixed target.
    method = method_factory("simclr", LossConfig("distance", distance="euclidean"))
    a, b = (view.requires_grad_(True) for view in views_of(images))
    grad_a, grad_b = torch.autograd.grad(method.training_loss([a, b], 0.0), [a, b])
    swapped_b, swapped_a = torch.autograd.grad(method.training_loss([b, a], 0.0), [b, a])
    assert grad_a.abs().sum() > 0
    assert grad_b.abs().sum() > 0
    # Up to float summation order in batch norm: 1e-3 of the largest gradient entry.
    for grad, swapped in ((grad_a, swapped_a), (grad_b, swapped_b)):
        torch.testing.assert_close(grad, swapped, rtol=0, atol=1e-3 * grad.abs().max().item())


def test_identical_views_give_lower_loss_than_different_images(
    method_factory: Callable, images: torch.Tensor, views_of: Callable
) -> None:
    method = method_factory("simclr", LossConfig("ntxent")).eval()
    first, _ = views_of(images)
    with torch.no_grad():
        same = method.training_loss([first, first], 0.0)
        shuffled = method.training_loss([first, first.roll(1, dims=0)], 0.0)
    assert same < shuffled


@pytest.mark.parametrize(
    ("loss", "expected_type", "expected_tau"),
    [
        (LossConfig("ntxent"), NTXentLoss, 0.5),
        (LossConfig("ntxent", temperature=0.1), NTXentLoss, 0.1),
        (LossConfig("distance"), DistanceContrastiveLoss, 0.5),
    ],
)
def test_build_method_criterion(loss: LossConfig, expected_type: type, expected_tau: float) -> None:
    method = build_method(MethodConfig("simclr"), loss, nn.Flatten(), feature_dim=12)
    assert isinstance(method, SimCLR)
    assert type(method.criterion) is expected_type
    assert method.criterion.temperature == expected_tau
    assert method.criterion.memory_bank.size == (0,)  # in-batch negatives only


@pytest.mark.parametrize(("hidden", "expected_hidden"), [(None, 12), (7, 7)])
def test_projection_head_sizes(hidden: int | None, expected_hidden: int) -> None:
    config = MethodConfig("simclr", projection_hidden_dim=hidden, projection_output_dim=5)
    method = build_method(config, LossConfig(), nn.Flatten(), feature_dim=12)
    linears = [m for m in method.projection_head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (12, expected_hidden),
        (expected_hidden, 5),
    ]


def test_unknown_method_raises() -> None:
    with pytest.raises(ContrastiveError, match="byol"):
        build_method(MethodConfig("byol"), LossConfig(), nn.Flatten(), feature_dim=12)
