"""``benchmarks/gpu_plan.py``: the planner on a described H200 under throughput models."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
gpu_plan = pytest.importorskip("gpu_plan")


def test_a_faster_device_is_planned_a_costlier_network(capsys) -> None:
    assert gpu_plan.main(["--images", "50000", "--side", "32", "--budget", "900"]) == 0
    printed = capsys.readouterr().out
    blocks = printed.split("== ")[1:]
    assert len(blocks) == len(gpu_plan.MODELS)
    work = [float(re.search(r"([\d.]+) forward GFLOP per view", block)[1]) for block in blocks]
    # Models are listed fastest first: each slower one gets no costlier a network.
    assert work == sorted(work, reverse=True) and work[0] > work[-1]
    assert all("batch_size = 512" in block for block in blocks)
