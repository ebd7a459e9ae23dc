"""LossConfig validation and build_loss: which module, with which temperature and queue."""

from __future__ import annotations

import pytest
import torch
from lightly.loss import NTXentLoss

from contrastive.errors import ContrastiveError
from contrastive.losses import DISTANCES, DistanceContrastiveLoss, LossConfig, build_loss


@pytest.mark.parametrize(
    ("configured", "method_default", "expected"),
    [(None, 0.5, 0.5), (None, 0.2, 0.2), (0.07, 0.5, 0.07)],
)
def test_ntxent_is_lightly_with_resolved_temperature(
    configured: float | None, method_default: float, expected: float
) -> None:
    loss = build_loss(LossConfig("ntxent", temperature=configured), method_default)
    assert type(loss) is NTXentLoss
    assert loss.temperature == expected
    assert loss.memory_bank.size == (0,)


def test_ntxent_value_matches_a_fresh_lightly_loss() -> None:
    out0, out1 = torch.randn(6, 4), torch.randn(6, 4)
    built = build_loss(LossConfig("ntxent"), 0.3)
    torch.testing.assert_close(built(out0, out1), NTXentLoss(temperature=0.3)(out0, out1))


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize(("configured", "expected"), [(None, 0.2), (0.9, 0.9)])
def test_distance_loss_with_its_distance_and_temperature(
    distance: str, configured: float | None, expected: float
) -> None:
    loss = build_loss(LossConfig("distance", temperature=configured, distance=distance), 0.2)
    assert type(loss) is DistanceContrastiveLoss
    assert loss.distance == distance
    assert loss.temperature == expected


@pytest.mark.parametrize("name", ["ntxent", "distance"])
def test_memory_bank_size_is_passed_on(name: str) -> None:
    loss = build_loss(LossConfig(name), 0.2, memory_bank_size=(32, 8))
    assert loss.memory_bank.size == (32, 8)
    assert loss.memory_bank.bank.shape == (32, 8)


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"name": "infonce"}, "infonce"),
        ({"name": "distance", "distance": "l1"}, "l1"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
    ],
)
def test_bad_config_raises(kwargs: dict, culprit: str) -> None:
    with pytest.raises(ContrastiveError, match=culprit):
        LossConfig(**kwargs)
