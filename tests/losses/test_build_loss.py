"""LossConfig validation and build_loss: which module, with which temperature and queue."""

from __future__ import annotations

import math

import pytest
import torch
from lightly.loss import DCLLoss, NTXentLoss

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


def dcl_by_hand(out0: torch.Tensor, out1: torch.Tensor, temperature: float) -> float:
    """Decoupled contrastive loss (Yeh et al., 2022, eq. 6) written out per anchor: the
    positive's similarity is not in the denominator, unlike NT-Xent's."""
    views = [torch.nn.functional.normalize(out, dim=1) for out in (out0, out1)]
    total, count = 0.0, 0
    for anchor_view, other_view in ((0, 1), (1, 0)):
        anchors, others = views[anchor_view], views[other_view]
        for i in range(len(anchors)):
            positive = float(anchors[i] @ others[i]) / temperature
            negatives = [
                float(anchors[i] @ candidates[j]) / temperature
                for candidates in (anchors, others)
                for j in range(len(anchors))
                if j != i
            ]
            total += -positive + math.log(sum(math.exp(value) for value in negatives))
            count += 1
    return total / count


def test_dcl_is_lightly_and_matches_the_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    out0, out1 = torch.randn(5, 3, generator=generator), torch.randn(5, 3, generator=generator)
    loss = build_loss(LossConfig("dcl", temperature=0.2), 0.5)
    assert type(loss) is DCLLoss
    assert float(loss(out0, out1)) == pytest.approx(dcl_by_hand(out0, out1, 0.2), rel=1e-5)
    # Without the positive in the denominator, DCL is below NT-Xent on the same pairs.
    assert float(loss(out0, out1)) < float(NTXentLoss(temperature=0.2)(out0, out1))


def test_dcl_refuses_a_memory_bank() -> None:
    with pytest.raises(ContrastiveError, match="dcl.*in-batch negatives"):
        build_loss(LossConfig("dcl"), 0.2, memory_bank_size=(32, 8))


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
