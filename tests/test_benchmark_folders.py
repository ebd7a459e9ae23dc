"""``benchmarks/folders.py``: the table's error ratio against the better peer, and subsets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
folders = pytest.importorskip("folders")


def _row(kind: str, top1: float, budget: str = "10m", date: str = "2026-01-01") -> dict:
    return {
        "name": "tiles",
        "row": kind,
        "budget": budget,
        "knn_top1": top1,
        "error": round(1 - top1, 6),
        "bank_images": 100,
        "test_images": 20,
        "train_data_images": 100,
        "date": date,
    }


def test_error_ratio_uses_the_better_of_the_newest_peer_rows(tmp_path: Path) -> None:
    rows = [
        _row("peer32", 0.20, date="1"),  # replaced by the newer peer32 row below
        _row("peer32", 0.50, date="2"),
        _row("peer64", 0.60, date="3"),  # error 0.40: the better peer
        _row("ours", 0.80, date="4"),  # error 0.20: ratio 0.5
        _row("ours", 0.90, budget="1m", date="5"),  # no peers at 1m: no ratio
    ]
    jsonl = tmp_path / "folders.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    folders.write_markdown(jsonl, tmp_path / "folders.md")
    lines = [line for line in (tmp_path / "folders.md").read_text().splitlines() if "|" in line]
    header, *table = ([cell.strip() for cell in line.strip("|").split("|")] for line in lines)
    table = [dict(zip(header, cells)) for cells in table[1:]]  # after the |---| line
    ratios = {(r["budget"], r["row"], r["date"]): r["error / better peer"] for r in table}
    assert ratios == {
        ("1m", "ours", "5"): "-",  # sorted first: the shorter budget
        ("10m", "ours", "4"): "0.50",
        ("10m", "peer32", "1"): "2.00",
        ("10m", "peer32", "2"): "1.25",
        ("10m", "peer64", "3"): "1.00",
    }
    assert [r["budget"] for r in table] == ["1m", "10m", "10m", "10m", "10m"]


def test_limit_per_class_takes_at_most_n_images_of_each_class(tmp_path: Path) -> None:
    for name, count in (("a", 5), ("b", 2)):
        (tmp_path / "src" / name).mkdir(parents=True)
        for index in range(count):
            (tmp_path / "src" / name / f"{index}.jpg").write_bytes(b"x")
    target = folders.limit_per_class(tmp_path / "src", tmp_path / "small", 3)
    assert sorted(len(list((target / c).iterdir())) for c in ("a", "b")) == [2, 3]


def test_the_saved_peer_is_a_run_folder_the_evaluators_load(tmp_path: Path) -> None:
    import torch
    import torchvision

    from contrastive.encoder import load_encoder
    from contrastive.views.config import ViewConfig

    resnet = torchvision.models.resnet18()
    peer = torch.nn.Sequential(*list(resnet.children())[:-1], torch.nn.Flatten()).eval()
    folders.save_peer_run(peer, ViewConfig(input_size=32), tmp_path / "peer32-tiles-10m")
    encoder = load_encoder(tmp_path / "peer32-tiles-10m")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder.backbone(images).flatten(1), peer(images))
    assert encoder.view_config.input_size == 32


def test_eval_input_size_re_evaluates_a_run_at_another_size(
    run_dir: Path, cifar10_small: dict[str, Path], tmp_path: Path
) -> None:
    common = ["--name", "tiles", "--train", str(cifar10_small["train"])]
    common += ["--test", str(cifar10_small["test"]), "--row", "random", "--ours-run", str(run_dir)]
    common += ["--results", str(tmp_path / "rows.jsonl"), "--runs", str(tmp_path / "runs")]
    own = folders.main(common)
    larger = folders.main([*common, "--eval-input-size", "24"])
    assert (own["eval_input_size"], larger["eval_input_size"]) == (16, 24)
    assert larger["eval_input_size_overridden"] and "eval_input_size_overridden" not in own


@pytest.mark.parametrize(("seed", "extra"), [(0, []), (1, ["--seed", "1"])])
def test_ours_adds_a_seed_to_its_command_only_where_it_is_not_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seed: int, extra: list[str]
) -> None:
    commands = []

    def run(command: list[str]) -> object:
        commands.append(command)
        return type("Finished", (), {"returncode": 0})()

    monkeypatch.setattr(folders.subprocess, "run", run)
    monkeypatch.setattr(folders, "load_run", lambda run: (None, None, {"images_seen": 10}))
    folders.train_ours(tmp_path / "data", tmp_path / "run", "1m", seed)
    expected = ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    assert commands[0][3:] == [*expected, "--time-budget", "1m", *extra]
