"""``compare_encoders`` / ``score_embeddings``: the CLI's protocols, several runs in one table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import contrastive.cli as cli
from contrastive.embeddings import RawPixels, embed_folder
from contrastive.encoder import load_encoder
from contrastive.errors import ContrastiveError
from contrastive.evaluation.compare import SCORES, Comparison, compare_encoders, score_embeddings
from contrastive.views.config import ViewConfig


def second_run(run_dir: Path, tmp_path: Path, seed: int = 11) -> Path:
    """A copy of the fixture run with other weights."""
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    encoder = load_encoder(run_dir)
    torch.manual_seed(seed)
    for parameter in encoder.backbone.parameters():
        parameter.data.normal_(0, 0.05)
    torch.save(encoder.backbone.state_dict(), other / "backbone.pt")
    return other


def test_score_embeddings_on_separable_pixels(colour_folders: dict[str, Path]) -> None:
    views = ViewConfig(input_size=16)
    train = embed_folder(colour_folders["train"], views, {"p": RawPixels()}, progress=False)["p"]
    test = embed_folder(colour_folders["test"], views, {"p": RawPixels()}, progress=False)["p"]
    # k above the 18 training images is capped rather than refused.
    scores = score_embeddings(train, test, k=50, weight_decays=(1e-3, 1e-1))
    assert set(scores) == {*SCORES, "weight_decay"}
    assert all(scores[key] == 1.0 for key in SCORES)
    assert scores["weight_decay"] in (1e-3, 1e-1)


def test_rows_match_the_cli_reports(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path
) -> None:
    comparison = compare_encoders(
        [run_dir], colour_folders["train"], colour_folders["test"], k=5, weight_decays=(1e-3, 1e-1)
    )
    assert list(comparison.scores) == ["run", "random init", "raw pixels"]
    assert comparison.baselines == ["random init", "raw pixels"]
    common = [
        "--train",
        colour_folders["train"],
        "--test",
        colour_folders["test"],
        "--run",
        run_dir,
        "--baselines",
        "--no-progress",
    ]
    for protocol, extra in (("knn", ["--k", "5"]), ("linear", ["--weight-decay", "1e-3,1e-1"])):
        out = tmp_path / f"{protocol}.json"
        assert cli.main([str(a) for a in ["eval", protocol, *common, *extra, "--out", out]]) == 0
        results = json.loads(out.read_text())["results"]
        for key, row in (
            ("model", "run"),
            ("random_init", "random init"),
            ("raw_pixels", "raw pixels"),
        ):
            numbers = results[key]["k=5"] if protocol == "knn" else results[key]
            assert comparison.scores[row][f"{protocol}_top1"] == pytest.approx(numbers["top1"])
            assert comparison.scores[row][f"{protocol}_top5"] == pytest.approx(numbers["top5"])
    assert comparison.scores["raw pixels"]["knn_top1"] == 1.0


def test_several_runs_share_one_set_of_baselines(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path
) -> None:
    other = second_run(run_dir, tmp_path)
    comparison = compare_encoders(
        {"first": run_dir, "second": load_encoder(other)},
        colour_folders["train"],
        colour_folders["test"],
        k=3,
        weight_decays=(1e-2,),
    )
    assert list(comparison.scores) == ["first", "second", "random init", "raw pixels"]
    assert comparison.scores["first"] != comparison.scores["second"]
    table = comparison.table().splitlines()
    assert table[0].startswith("| features") and "kNN top-1 (k=3)" in table[0]
    # Top-5 of 5 or fewer classes is 100% by construction: the table leaves it out, as the CLI.
    assert comparison.num_classes == len(list(Path(colour_folders["train"]).iterdir())) <= 5
    assert "top-5" not in table[0] and table[0].count("|") == 4
    assert [line.split("|")[1].strip() for line in table[2:]] == list(comparison.scores)
    saved = json.loads(json.dumps(comparison.to_dict()))
    assert saved["scores"]["second"] == comparison.scores["second"] and saved["k"] == 3

    alone = compare_encoders(
        str(run_dir),
        colour_folders["train"],
        colour_folders["test"],
        baselines=False,
        k=3,
        weight_decays=(1e-2,),
    )
    assert list(alone.scores) == ["run"] and alone.baselines == []
    assert alone.scores["run"] == comparison.scores["first"]


def test_bad_names_are_refused(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path
) -> None:
    folders = (colour_folders["train"], colour_folders["test"])
    with pytest.raises(ContrastiveError, match="no encoders"):
        compare_encoders({}, *folders)
    twin = tmp_path / "twin" / "run"
    shutil.copytree(run_dir, twin)
    with pytest.raises(ContrastiveError, match="same name"):
        compare_encoders([run_dir, twin], *folders)
    with pytest.raises(ContrastiveError, match="taken by the baselines"):
        compare_encoders({"raw pixels": run_dir}, *folders, k=3, weight_decays=(1e-2,))


def test_unlabelled_folder_is_refused(
    run_dir: Path, colour_folders: dict[str, Path], tmp_path: Path
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in sorted(colour_folders["train"].rglob("*.png"))[:6]:
        shutil.copy2(image, flat / f"{image.parent.name}-{image.name}")
    with pytest.raises(ContrastiveError, match="label"):
        compare_encoders([run_dir], flat, colour_folders["test"], baselines=False)


def test_table_shows_top5_only_above_five_classes() -> None:
    scores = {"run": {key: 0.5 for key in SCORES}}
    for num_classes, shown in ((10, True), (5, False), (None, True)):
        comparison = Comparison(scores, [], 20, "a", "b", num_classes=num_classes)
        header = comparison.table().splitlines()[0]
        assert ("kNN top-5" in header and "linear top-5" in header) is shown, num_classes
        assert "linear top-1" in header
