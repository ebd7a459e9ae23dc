"""``contrastive curate``: where the report may go, and embeddings made from another folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import contrastive.cli as cli
from contrastive.curation.pipeline import check_matches_folder
from contrastive.embeddings import Embeddings, save_embeddings
from contrastive.errors import ContrastiveError


def test_a_report_inside_the_data_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # No run exists: the refusal must come before the encoder is looked for.
    code = cli.main(["curate", "--run", "nowhere", "--data", str(data), "--out", str(data / "r")])
    assert code == 2
    assert f"--out {data / 'r'} is inside --data {data}" in capsys.readouterr().err
    assert not (data / "r").exists()


def test_embeddings_of_another_folder_are_named(
    tmp_path: Path, make_textured_folder, capsys: pytest.CaptureFixture
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    make_textured_folder(first, {"a": 4, "b": 4}, seed=0)
    make_textured_folder(second, {"a": 4, "b": 4}, seed=1)  # the same names, other images
    paths = sorted(p.relative_to(first).as_posix() for p in first.rglob("*.png"))
    features = np.random.default_rng(0).normal(size=(len(paths), 8)).astype(np.float32)
    save_embeddings(
        Embeddings(features, np.array(paths), data_root=str(first)), tmp_path / "first.npz"
    )
    arguments = ["curate", "--embeddings", str(tmp_path / "first.npz"), "--data", str(second)]
    with pytest.warns(UserWarning, match=f"was embedded from {first}, not --data {second}"):
        code = cli.main([*arguments, "--out", str(tmp_path / "report"), "--no-sheets"])
    assert code == 0
    assert (tmp_path / "report" / "summary.md").is_file()


def test_embeddings_may_lack_only_the_images_that_cannot_be_read(
    tmp_path: Path, make_textured_folder
) -> None:
    data = tmp_path / "data"
    make_textured_folder(data, {"a": 4}, seed=0)
    names = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    dataset = Embeddings(np.eye(len(names), 4, dtype=np.float32), np.array(names))
    (data / "a" / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match=r"1 unreadable image\(s\) .* \(e\.g\. a/broken\.png\)"):
        check_matches_folder(dataset, data)
    make_textured_folder(data / "b", {"": 1}, seed=1)  # a readable image without embedding
    with pytest.raises(
        ContrastiveError, match=r"2 of its 6 images \(e\.g\. b/000\.png\) have none"
    ):
        check_matches_folder(dataset, data)
