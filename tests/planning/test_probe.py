"""The planner's probe: real training steps timed on this machine, within its time."""

from __future__ import annotations

import pytest

from contrastive.hardware import Hardware
from contrastive.planning import probe
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
    # Measured again after the costly one: a stall of a shared host (seconds per step of a
    # ~10 ms network under a parallel run) must hit both to flip the comparison.
    cheap_again = rate(Candidate(*REFERENCE), 16, 32)
    assert cheap is not None and costly is not None and cheap_again is not None
    assert costly < max(cheap, cheap_again)  # 15x the FLOPs: slower per image on any CPU


def test_a_busy_cpu_is_named_before_the_probe(monkeypatch) -> None:  # noqa: ANN001
    import os

    from contrastive.hardware import busy_cpu_warning

    monkeypatch.setattr(os, "getloadavg", lambda: (3.1, 2.0, 1.0))
    monkeypatch.setattr("contrastive.hardware.others_busy_cores", lambda: 2.0)
    warning = busy_cpu_warning(CPU, threads=2)
    assert warning is not None
    assert "load average 3.1 on 2 cores, other processes using 2.0 of them now" in warning
    assert "OMP_NUM_THREADS=1" in warning
    assert busy_cpu_warning(CPU, threads=1) is None  # one thread cannot contend with itself
    gpu = Hardware("cuda", cpu_cores=2, bf16=True, memory_bytes=8 * 2**30)
    assert busy_cpu_warning(gpu, threads=2) is None
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 2.0, 1.0))
    assert busy_cpu_warning(CPU, threads=2) is None  # a core left for this run


@pytest.mark.parametrize(("bf16", "expected"), [(False, "32-true"), (True, "bf16-mixed")])
def test_auto_precision_is_measured_as_the_hardware_says(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: str
) -> None:
    # The plan prints "fp32" or "bf16" from the hardware it was given (a described GPU in
    # tests, this CPU in use); the candidates must be timed in that precision, not in the
    # one this host would choose.
    precisions: list[str] = []

    def timed(module, batches, precision, device, steps, fastest):  # noqa: ANN001, ANN202
        precisions.append(precision)
        return 0.1

    monkeypatch.setattr(probe, "measure_seconds_per_step", timed)
    hardware = Hardware("cpu", cpu_cores=2, bf16=bf16, memory_bytes=8 * 2**30)
    base = cpu_budget_recipe(data="images", out="run")
    assert base.precision == "auto"
    assert measured_rate(base, hardware, max_seconds=60.0)(Candidate(*REFERENCE), 16, 32) == 160
    explicit = measured_rate(base.with_overrides(precision="32-true"), hardware, 60.0)
    explicit(Candidate(*REFERENCE), 16, 32)
    assert precisions == [expected, "32-true"]
