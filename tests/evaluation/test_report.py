"""Report JSON (strict, compact rows) and the printed tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from contrastive.evaluation.report import (
    build_report,
    format_table,
    knn_table,
    linear_table,
    top_k_metrics,
    write_report,
)


def test_report_is_strict_json_with_plain_values(tmp_path: Path) -> None:
    results = {
        "model": {
            "top1": np.float32(0.5),
            "per_class_accuracy": [math.nan, 1.0],
            "confusion_matrix": torch.tensor([[1, 0], [2, 3]]),
        }
    }
    report = build_report("knn", {"k": (20, 200)}, {"train": tmp_path / "a.npz"}, "run", results)
    write_report(report, tmp_path / "out" / "knn.json")
    text = (tmp_path / "out" / "knn.json").read_text()
    loaded = json.loads(text)
    assert loaded["results"]["model"] == {
        "top1": 0.5,
        "per_class_accuracy": [None, 1.0],
        "confusion_matrix": [[1, 0], [2, 3]],
    }
    assert loaded["settings"] == {"k": [20, 200]}
    assert loaded["data"]["train"] == str(tmp_path / "a.npz")
    assert loaded["protocol"] == "knn" and loaded["checkpoint"] == "run" and loaded["created"]
    assert "[1, 0]," in text  # matrix rows stay on one line


def test_tables_show_percentages_per_row() -> None:
    knn = knn_table(
        {
            "model": {"k=20": {"top1": 0.8123, "top5": 0.99}},
            "raw_pixels": {"k=20": {"top1": 0.3, "top5": 0.7}},
        }
    )
    assert knn.splitlines() == [
        "| features   | k=20 top1 | k=20 top5 |",
        "|------------|-----------|-----------|",
        "| model      | 81.23     | 99.00     |",
        "| raw pixels | 30.00     | 70.00     |",
    ]
    linear = linear_table({"random_init": {"top1": 0.25, "top5": None, "weight_decay": 1e-4}})
    assert linear.splitlines()[2] == "| random init | 25.00 | -    | 0.0001       |"
    assert format_table(["a"], []) == "| a |\n|---|"


def test_top5_is_printed_only_where_it_can_miss() -> None:
    # With 5 classes or fewer every image's class is among the top 5: always 100%.
    assert top_k_metrics(5) == ("top1",)
    assert top_k_metrics(6) == ("top1", "top5")
    results = {"model": {"k=20": {"top1": 0.5, "top5": 1.0}}}
    assert knn_table(results, top_k_metrics(3)).splitlines()[0] == "| features | k=20 top1 |"
    linear = linear_table({"model": {"top1": 0.5, "top5": 1.0, "weight_decay": 0.1}}, ("top1",))
    assert linear.splitlines()[0] == "| features | top1  | weight decay |"
