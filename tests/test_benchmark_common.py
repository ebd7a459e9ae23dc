"""``benchmarks/common.py``: the peer's step budget fills its wall-clock budget."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from common import BudgetSteps  # noqa: E402


def _loop(budget_s: float, seconds_of_step: Callable[[int], float]) -> tuple[int, float, list]:
    """Runs a fake training loop on a fake clock: (steps, seconds, plans after each step)."""
    now = [0.0]
    budget = BudgetSteps(budget_s, clock=lambda: now[0])
    plans, step = [], 0
    while True:
        step += 1
        now[0] += seconds_of_step(step)
        stop = budget.after_step(step)
        plans.append(budget.planned)
        if stop:
            return step, now[0], plans


def test_a_steady_loop_is_planned_after_its_fifth_step_and_ends_near_the_budget() -> None:
    steps, seconds, plans = _loop(600.0, lambda step: 1.0)
    assert plans[:4] == [None] * 4 and plans[4] is not None  # the schedule needs a plan early
    assert 0.95 * 600 <= seconds <= 600
    assert steps == pytest.approx(600, abs=30)


def test_slow_first_steps_do_not_end_the_loop_early() -> None:
    # Steps 2-5 at 3 s, then 1 s: a plan from those steps alone (190 steps) ended the loop
    # after about a third of its budget.
    steps, seconds, _ = _loop(600.0, lambda step: 3.0 if step <= 5 else 1.0)
    assert 0.95 * 600 <= seconds <= 600
    assert steps > 500


def test_a_loop_that_slows_down_stops_at_the_budget() -> None:
    steps, seconds, plans = _loop(600.0, lambda step: 1.0 if step <= 100 else 4.0)
    assert seconds <= 600 + 4.0  # at most the step under way when the budget ran out
    assert seconds >= 0.95 * 600
    assert plans[-1] <= plans[99]  # the later plans shrank to the slower rate
