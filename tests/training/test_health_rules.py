"""The rules' reference values: the uniformity of points spread evenly over a sphere, the
collapse threshold, and which methods the spread rule was calibrated for."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.special import i0

from contrastive.evaluation.label_free import uniformity
from contrastive.training.health_rules import (
    collapse_threshold,
    spread_is_calibrated,
    uniform_sphere_uniformity,
)


def test_uniformity_on_the_circle_has_its_closed_form() -> None:
    # On the circle the squared distance is 2 - 2 cos(theta), theta uniform:
    # E[exp(-2 (2 - 2 cos theta))] = exp(-4) I0(4).
    assert uniform_sphere_uniformity(2) == pytest.approx(-4 + math.log(i0(4.0)), abs=1e-6)


@pytest.mark.parametrize(("dim", "expected"), [(2, -1.58), (16, -3.51), (128, -3.94)])
def test_the_documented_values(dim: int, expected: float) -> None:
    assert uniform_sphere_uniformity(dim) == pytest.approx(expected, abs=0.005)


@pytest.mark.parametrize("dim", [3, 16, 128])
def test_random_points_on_the_sphere_agree(dim: int) -> None:
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(3000, dim, generator=generator, dtype=torch.float64)
    assert uniformity(points) == pytest.approx(uniform_sphere_uniformity(dim), abs=0.03)


def test_collapse_threshold_is_a_tenth_of_the_healthy_spread() -> None:
    assert collapse_threshold(128) == pytest.approx(0.1 / math.sqrt(128))
    assert collapse_threshold(16, fraction=0.5) == pytest.approx(0.125)


@pytest.mark.parametrize(("method", "calibrated"), [("simclr", True), ("moco", False)])
def test_the_spread_rule_holds_for_in_batch_negatives_only(method: str, calibrated: bool) -> None:
    assert spread_is_calibrated(method) is calibrated


def test_an_unknown_method_is_not_judged_by_the_spread() -> None:
    assert not spread_is_calibrated("byol")
