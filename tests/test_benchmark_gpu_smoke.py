"""``benchmarks/gpu_smoke.py``: its command line, and its numbers read from a run's metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
gpu_smoke = pytest.importorskip("gpu_smoke")


def test_help_names_the_budget_and_data_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        gpu_smoke.main(["--help"])

    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "--time-budget" in shown
    assert "--data" in shown


def test_defaults_fit_a_short_gpu_run() -> None:
    args = gpu_smoke.parse_args([])

    assert args.time_budget == "60s"
    assert args.per_class == 1000
    assert args.batch_size is None  # chosen by device


def test_loop_rate_is_the_median_of_the_second_half(tmp_path: Path) -> None:
    rows = ["step,loss,img_per_s", "0,1.0,", "49,1.0,100", "99,1.0,900", "149,1.0,1000"]
    rows += ["199,1.0,1100", "249,1.0,1200"]
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")

    images, steps = gpu_smoke.loop_rate(tmp_path, batch_size=100)

    assert images == 1100  # median of 1000, 1100, 1200
    assert steps == 11
