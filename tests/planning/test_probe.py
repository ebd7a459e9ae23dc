"""The planner's probe: real training steps timed on this machine, within its time."""

from __future__ import annotations

from contrastive.hardware import Hardware
from contrastive.planning.planner import REFERENCE, Candidate
from contrastive.planning.probe import measured_rate
from contrastive.recipes import cpu_budget_recipe

CPU = Hardware("cpu", cpu_cores=2, bf16=False, memory_bytes=8 * 2**30)


def test_the_first_candidate_is_measured_and_none_once_the_time_is_spent() -> None:
    base = cpu_budget_recipe(data="images", out="run").with_overrides(precision="32-true")
    rate = measured_rate(base, CPU, max_seconds=0.0)
    first = rate(Candidate(*REFERENCE), 16, 32)
    assert first is not None and first > 0
    # No time left: the planner prices this one with its rate model instead.
    assert rate(Candidate("resnet18_quarter", 24, 1), 16, 32) is None


def test_candidates_are_measured_while_time_is_left() -> None:
    base = cpu_budget_recipe(data="images", out="run").with_overrides(precision="32-true")
    rate = measured_rate(base, CPU, max_seconds=60.0)
    cheap = rate(Candidate(*REFERENCE), 16, 32)
    costly = rate(Candidate("resnet18_half", 32, 1), 16, 32)
    assert cheap is not None and costly is not None
    assert costly < cheap  # 15x the FLOPs: slower per image on any CPU
