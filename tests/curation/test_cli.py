"""``contrastive curate`` end to end on tiny folders, and its one-line errors."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import contrastive.cli as cli
from contrastive.data.folder import ImageFolder
from contrastive.embeddings import load_embeddings


def run_cli(*arguments: object) -> int:
    return cli.main([str(argument) for argument in arguments])


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def folders(tmp_path: Path, make_textured_folder) -> dict[str, Path]:
    """``data``: 3 classes x 8 images plus an exact and a resized copy of ``a/000.png``;
    ``other``: 6 images, one a JPEG copy of ``b/001.png``."""
    data, other = tmp_path / "data", tmp_path / "other"
    make_textured_folder(data, {"a": 8, "b": 8, "c": 8}, seed=0)
    (data / "c" / "copy.png").write_bytes((data / "a" / "000.png").read_bytes())
    Image.open(data / "a" / "000.png").resize((30, 30)).save(data / "b" / "small.png")
    make_textured_folder(other, {"": 6}, seed=9)
    Image.open(data / "b" / "001.png").save(other / "leak.jpg", quality=40)
    return {"data": data, "other": other}


def test_curate_writes_every_list(
    run_dir: Path, folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "report"
    arguments = ["curate", "--run", run_dir, "--data", folders["data"], "--out", out]
    arguments += ["--against", folders["other"], "--select", 4, "--link-selected"]
    assert run_cli(*arguments, "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "duplicate groups: 1 (3 images, 1 exact copies)" in printed
    # The copies of a/000.png are filed under b/ and c/ too: one picture, three labels.
    assert "filed under different classes (the same picture with two labels" in printed
    duplicates = read_csv(out / "duplicates.csv")
    assert [row["path"] for row in duplicates] == ["a/000.png", "b/small.png", "c/copy.png"]
    assert [row["exact_copy"] for row in duplicates] == ["1", "0", "1"]
    leaks = read_csv(out / "leaks.csv")
    assert [(row["folder"], Path(row["path"]).name) for row in leaks] == [
        ("data", "001.png"),
        ("against", "leak.jpg"),
    ]
    assert len(read_csv(out / "outliers.csv")) == 26
    assert len(read_csv(out / "label_issues.csv")) >= 0
    selection = read_csv(out / "selection.csv")
    assert [row["rank"] for row in selection] == ["1", "2", "3", "4"]
    links = sorted((out / "selected").iterdir())
    assert [link.name[:5] for link in links] == ["0001_", "0002_", "0003_", "0004_"]
    assert links[0].resolve() == (folders["data"] / selection[0]["path"]).resolve()
    for sheet in ("duplicates", "leaks", "outliers", "selection"):
        assert (out / f"{sheet}.png").stat().st_size > 1000
    assert (out / "summary.json").is_file() and (out / "summary.md").is_file()
    # The embeddings made with --run are kept, and a second curation reads them instead.
    saved = out / "embeddings.npz"
    assert f"embeddings saved to {saved}" in printed
    # --data defaults to the folder the embeddings record (before: "--data is required").
    second = ["curate", "--embeddings", saved, "--out", out]
    assert run_cli(*second, "--select", 2, "--no-progress", "--no-sheets") == 0
    printed = capsys.readouterr().out
    assert f"curating {folders['data']} (the folder {saved} was embedded from)" in printed
    assert "embeddings saved" not in printed
    assert f"report: {out} (summary.md, CSV files)" in printed  # --no-sheets: no PNG named
    assert "duplicate groups: 1 (3 images, 1 exact copies)" in printed
    assert len(read_csv(out / "selection.csv")) == 2


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ")
    return err


def test_embeddings_of_a_folder_gone_need_data(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    moved = tmp_path / "moved.npz"
    np.savez(
        moved,
        embeddings=np.zeros((2, 4), np.float32),
        paths=np.array(["a.png", "b.png"]),
        data_root=np.asarray(str(tmp_path / "gone")),
    )
    assert run_cli("curate", "--embeddings", moved, "--out", tmp_path / "r") == 2
    assert one_line_error(capsys) == (
        f"error: give --data: {moved} records no existing image folder ('{tmp_path / 'gone'}')"
    )


def test_missing_run_or_data_is_one_line(
    run_dir: Path, folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_cli("curate", "--data", folders["data"], "--out", tmp_path / "r") == 2
    assert "curate needs --run" in one_line_error(capsys)
    assert run_cli("curate", "--run", run_dir, "--out", tmp_path / "r") == 2
    assert one_line_error(capsys) == "error: --data is required: the image folder to curate"


def test_bad_requests_are_named(
    run_dir: Path, folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base = ["curate", "--run", run_dir, "--out", tmp_path / "r", "--no-progress"]
    assert run_cli(*base, "--data", folders["data"], "--select", 100) == 2
    assert "cannot select 100 images to label: the folder has 26" in one_line_error(capsys)
    assert run_cli(*base, "--data", folders["other"], "--label-issues", "yes") == 2
    assert "label-mistake detection needs class sub-folders" in one_line_error(capsys)
    assert run_cli(*base, "--data", folders["data"], "--link-selected") == 2
    assert "--link-selected needs --select" in one_line_error(capsys)


def test_embeddings_of_another_folder_are_refused(
    run_dir: Path,
    folders: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = tmp_path / "other.npz"
    assert run_cli("embed", "--run", run_dir, "--data", folders["other"], "--out", other) == 0
    capsys.readouterr()
    arguments = ["curate", "--embeddings", other, "--data", folders["data"]]
    assert run_cli(*arguments, "--out", tmp_path / "r", "--no-progress") == 2
    assert "the embeddings are not of" in one_line_error(capsys)
    mine = tmp_path / "data.npz"
    assert run_cli("embed", "--run", run_dir, "--data", folders["data"], "--out", mine) == 0
    arguments = ["curate", "--embeddings", mine, "--data", folders["data"], "--no-sheets"]
    scans = []
    original_scan = ImageFolder.scan.__func__

    def counted_scan(cls, root, *args, **kwargs):  # noqa: ANN001, ANN202
        scans.append(Path(root))
        return original_scan(cls, root, *args, **kwargs)

    monkeypatch.setattr(ImageFolder, "scan", classmethod(counted_scan))
    with caplog.at_level(logging.INFO):
        assert run_cli(*arguments, "--out", tmp_path / "r") == 0
    # The folder is scanned once (a 255,000-image scan costs ~12 s), and each step of the
    # minutes-long curation of a large folder says when it starts.
    assert scans == [folders["data"]]
    for step in ("duplicates:", "outliers:", "unusual groups:", "label mistakes:"):
        assert step in caplog.text
    assert (tmp_path / "r" / "outliers.csv").is_file()
    assert not (tmp_path / "r" / "outliers.png").exists()


def test_labelled_images_are_complemented_not_picked(
    run_dir: Path, folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "report"
    # A list of images of --data: neither they nor their exact copy are picked.
    listed = tmp_path / "labelled.txt"
    (folders["data"] / "b" / "004.png").rename(folders["data"] / "b" / "4, the fourth.png")
    listed.write_text("path\na/000.png\n\n# a comment\nb/003.png,b\nb/4, the fourth.png\n")
    arguments = ["curate", "--run", run_dir, "--data", folders["data"], "--out", out]
    assert run_cli(*arguments, "--select", 22, "--labelled", listed, "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "22 images, beside the 3 already labelled; 4 images of this folder are" in printed
    picked = {row["path"] for row in read_csv(out / "selection.csv")}
    listed_or_copy = {"a/000.png", "c/copy.png", "b/003.png", "b/4, the fourth.png"}
    assert len(picked) == 22 and not picked & listed_or_copy
    # A folder of labelled images is embedded with the run; their embeddings (.npz) do the
    # same from --embeddings.
    saved = out / "embeddings.npz"
    assert run_cli(*arguments, "--select", 3, "--labelled", folders["other"], "--no-sheets") == 0
    assert "beside the 7 already labelled" in capsys.readouterr().out
    with_folder = [row["path"] for row in read_csv(out / "selection.csv")]
    other = tmp_path / "other.npz"
    assert run_cli("embed", "--run", run_dir, "--data", folders["other"], "--out", other) == 0
    arguments = ["curate", "--embeddings", saved, "--data", folders["data"], "--out", out]
    assert run_cli(*arguments, "--select", 3, "--labelled", other, "--no-sheets") == 0
    assert [row["path"] for row in read_csv(out / "selection.csv")] == with_folder


def test_bad_labelled_inputs_are_named(
    run_dir: Path, folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base = ["curate", "--run", run_dir, "--data", folders["data"], "--out", tmp_path / "r"]
    base += ["--no-progress", "--no-sheets"]
    assert run_cli(*base, "--labelled", folders["other"]) == 2
    assert "--labelled needs --select N" in one_line_error(capsys)
    assert run_cli(*base, "--select", 2, "--labelled", tmp_path / "nothing") == 2
    assert f"--labelled {tmp_path / 'nothing'} does not exist" in one_line_error(capsys)
    listed = tmp_path / "labelled.txt"
    listed.write_text("a/000.png\na/nope.png\n")
    assert run_cli(*base, "--select", 2, "--labelled", listed) == 2
    error = one_line_error(capsys)
    assert "1 of its images are not in --data" in error and "'a/nope.png'" in error
    # A label table given as the list: its header was read as an image.
    listed.write_text("filename,species\na/000.png,cat\n")
    assert run_cli(*base, "--select", 2, "--labelled", listed) == 2
    error = one_line_error(capsys)
    assert "looks like a label table" in error and "give it as --labels FILE" in error
    embedded = tmp_path / "r" / "embeddings.npz"
    arguments = ["curate", "--embeddings", embedded, "--data", folders["data"]]
    arguments += ["--out", tmp_path / "r2", "--select", 2, "--labelled", folders["other"]]
    assert run_cli(*arguments) == 2
    assert "is a folder: it is embedded with the encoder, so give --run" in one_line_error(capsys)


def test_a_label_table_labels_the_folder_and_is_what_the_selection_complements(
    run_dir: Path, folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # The class folders say a/b/c; the table relabels 3 images and leaves the rest unlabeled.
    table = tmp_path / "labels.csv"
    table.write_text("file,species\na/000.png,x\nb/003.png,y\nsmall,z\nnothere.png,x\n")
    out = tmp_path / "report"
    arguments = ["curate", "--run", run_dir, "--data", folders["data"], "--out", out]
    assert run_cli(*arguments, "--labels", table, "--select", 22, "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "labels from labels.csv (4 rows; images in 'file', labels in 'species')" in printed
    assert "3 of the 26 images labeled, 3 classes" in printed
    assert "--select complements the 3 labelled images" in printed
    assert "22 images, beside the 3 already labelled" in printed
    picked = {row["path"] for row in read_csv(out / "selection.csv")}
    assert not picked & {"a/000.png", "c/copy.png", "b/003.png", "b/small.png"}
    # Again from the saved embeddings, which record the table's labels: the same picks.
    saved_run = ["curate", "--embeddings", out / "embeddings.npz", "--out", tmp_path / "again"]
    assert run_cli(*saved_run, "--select", 22, "--no-progress", "--no-sheets") == 0
    assert "--select complements the 3 labelled images" in capsys.readouterr().out
    again = {row["path"] for row in read_csv(tmp_path / "again" / "selection.csv")}
    assert again == picked
    saved = load_embeddings(out / "embeddings.npz")
    named = {str(path): saved.label_name(row) for row, path in enumerate(saved.paths)}
    assert named["a/000.png"] == "x" and named["b/003.png"] == "y"
    assert named["b/small.png"] == "z" and named["a/001.png"] == "unlabeled"
    assert list(saved.classes) == ["x", "y", "z"]
