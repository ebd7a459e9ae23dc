"""``benchmarks/step_rates.py``: bare-loop step rates of planner candidates."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
step_rates = pytest.importorskip("step_rates")


def test_rows_are_parsed_and_bad_rows_name_the_flag() -> None:
    assert step_rates.parse_row("resnet18_half:24:1024") == ("resnet18_half", 24, 1024)
    with pytest.raises(argparse.ArgumentTypeError, match="--rows"):
        step_rates.parse_row("resnet18:24")


def test_a_row_is_timed_and_its_work_follows_from_the_batch(tmp_path) -> None:
    out = tmp_path / "rates.jsonl"
    argv = ["--rows", "resnet10_quarter:24:128", "resnet10_quarter:24:256", "--warmup", "1"]
    assert step_rates.main([*argv, "--steps", "1", "--out", str(out)]) == 0
    small, large = (json.loads(line) for line in out.read_text().splitlines())
    assert (small["batch"], large["batch"]) == (2, 4)  # divided by 64 on the CPU
    work = 6 * step_rates.candidate_flops(step_rates.Candidate("resnet10_quarter", 24, 1))
    for row in (small, large):
        assert row["ms_per_step"] > 0 and row["device"] == "cpu"
        # images/s and TFLOP/s both follow from the time per step and the batch.
        expected = row["batch"] / (row["ms_per_step"] / 1000)
        assert row["images_per_s"] == pytest.approx(expected, rel=0.02, abs=0.1)
        assert row["tflops"] == pytest.approx(row["images_per_s"] * work / 1e12, rel=0.02, abs=1e-4)


def test_each_row_is_timed_in_each_precision_and_names_autos_choice(tmp_path) -> None:
    out = tmp_path / "rates.jsonl"
    argv = ["--rows", "resnet10_quarter:24:128", "--warmup", "1", "--steps", "1"]
    argv += ["--precisions", "32-true", "bf16-mixed", "auto", "--out", str(out)]
    assert step_rates.main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    auto = step_rates.resolve_precision("auto", "cpu")
    assert [row["precision"] for row in rows] == ["32-true", "bf16-mixed", auto]
    assert {row["auto"] for row in rows} == {auto}


def test_an_unknown_precision_is_refused_by_name(capsys) -> None:
    with pytest.raises(SystemExit):
        step_rates.main(["--precisions", "fp8"])
    assert "--precisions" in capsys.readouterr().err


def test_layouts_are_timed_in_turn_and_each_row_is_a_fraction_of_the_matmul(tmp_path) -> None:
    out = tmp_path / "rates.jsonl"
    argv = ["--rows", "resnet10_quarter:24:128", "--warmup", "1", "--steps", "1"]
    argv += ["--precisions", "32-true", "--layouts", "contiguous", "channels_last"]
    assert step_rates.main([*argv, "--matmul-side", "64", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["layout"] for row in rows] == ["contiguous", "channels_last"]
    for row in rows:
        assert row["matmul_tflops"] > 0
        assert row["fraction_of_matmul"] == pytest.approx(
            row["tflops"] / row["matmul_tflops"], rel=0.01, abs=1e-3
        )


def test_the_matmul_reference_counts_two_flops_per_multiply_add(monkeypatch) -> None:
    # A clock that advances 0.25 s per reading: a second holds 3 products, read at 1.25 s.
    ticks = iter(0.25 * tick for tick in range(100))
    monkeypatch.setattr(step_rates.time, "perf_counter", lambda: next(ticks))
    assert step_rates.matmul_tflops(100, "32-true", step_rates.torch.device("cpu")) == (
        pytest.approx(2 * 100**3 * 3 / 1.25 / 1e12)
    )


def test_a_negative_matmul_side_is_refused_by_name(capsys) -> None:
    with pytest.raises(SystemExit):
        step_rates.main(["--matmul-side", "-1"])
    assert "--matmul-side" in capsys.readouterr().err
