"""``benchmarks/prepare_folders.py``: the benchmark folders' rules, on a small git mirror."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
prepare = pytest.importorskip("prepare_folders")

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _mirror(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A bare-like git directory (what ``fetch`` brings) holding ``files`` at HEAD."""
    work = tmp_path / "work"
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "data"], check=True)
    return work / ".git"


def test_brain_mri_drops_byte_identical_copies_within_and_across_the_splits(
    tmp_path: Path,
) -> None:
    git_dir = _mirror(
        tmp_path,
        {
            "Training/glioma/a.jpg": b"A",
            "Training/glioma/b.jpg": b"A",  # a copy of a.jpg: dropped
            "Training/pituitary/c.jpg": b"C",
            "Testing/glioma/d.jpg": b"C",  # a copy of a training image: dropped
            "Testing/glioma/e.jpg": b"E",
            "Testing/pituitary/f.jpg": b"E",  # a copy of an earlier test image: dropped
            "Testing/pituitary/notes.txt": b"not an image",
        },
    )
    split = prepare.brain_mri(git_dir)
    assert [entry.path for entry in split["train"]] == [
        "Training/glioma/a.jpg",
        "Training/pituitary/c.jpg",
    ]
    assert [entry.path for entry in split["test"]] == ["Testing/glioma/e.jpg"]
    out = tmp_path / "out"
    prepare.write_split(git_dir, split, out)
    assert (out / "train" / "glioma" / "a.jpg").read_bytes() == b"A"
    assert (out / "test" / "glioma" / "e.jpg").read_bytes() == b"E"
    assert sorted(path.name for path in out.rglob("*.jpg")) == ["a.jpg", "c.jpg", "e.jpg"]


def test_a_drawn_split_shuffles_each_sorted_class_with_one_generator(tmp_path: Path) -> None:
    files = {
        f"flowers/{label}/{index:02d}.jpg": f"{label}{index}".encode()
        for label in ("rose", "daisy")
        for index in range(10)
    }
    git_dir = _mirror(tmp_path, files)
    split = prepare.drawn_split(prepare.listed(git_dir, "flowers"), lambda n: int(0.8 * n))
    rng = random.Random(0)
    expected_train = []
    for label in ("daisy", "rose"):
        names = [f"flowers/{label}/{index:02d}.jpg" for index in range(10)]
        rng.shuffle(names)
        expected_train += names[:8]
    assert [entry.path for entry in split["train"]] == expected_train
    assert len(split["test"]) == 4
    each = prepare.drawn_split(
        prepare.listed(git_dir, "flowers"), lambda n: int(0.8 * n), seed_per_class=True
    )
    # A generator of its own per class: both classes are cut at the same positions.
    positions = [
        [int(Path(entry.path).stem) for entry in each["train"] if f"/{label}/" in entry.path]
        for label in ("daisy", "rose")
    ]
    assert positions[0] == positions[1]


def test_stl10_labels_come_from_the_csv_and_every_image_trains(tmp_path: Path) -> None:
    root = "image-classification-competition-1"
    rows = [(0, "00.png"), (9, "01.png"), (0, "02.png"), (9, "03.png"), (0, "04.png")]
    files = {f"{root}/train_data/{name}": name.encode() for _, name in rows}
    files[f"{root}/train_data.csv"] = (
        "label,name\n" + "".join(f"{label},{name}\n" for label, name in rows)
    ).encode()
    files[f"{root}/test_data/00.png"] = b"unlabelled"  # the same name as a labelled one
    git_dir = _mirror(tmp_path, files)
    split = prepare.stl10(git_dir)
    assert {entry.label for entry in split["train"] + split["test"]} == {"airplane", "truck"}
    labelled = {Path(entry.path).name: entry.label for entry in split["train"] + split["test"]}
    assert labelled == {"00.png": "airplane", "01.png": "truck", "02.png": "airplane",
                        "03.png": "truck", "04.png": "airplane"}  # fmt: skip
    # int(0.8 n) of each class: 2 of the 3 airplanes, 1 of the 2 trucks.
    assert sorted(entry.label for entry in split["train"]) == ["airplane", "airplane", "truck"]
    out = tmp_path / "out"
    prepare.write_split(git_dir, split, out)
    # All 6 images train, and the two files named 00.png both survive.
    assert len(list((out / "unlabeled_all").rglob("*.png"))) == 6
    assert (out / "unlabeled_all" / "test_data" / "00.png").read_bytes() == b"unlabelled"


def test_tiny_imagenet_sorts_the_validation_images_by_their_annotations(tmp_path: Path) -> None:
    root = "tiny-imagenet-200"
    files = {
        f"{root}/train/n01/images/n01_0.JPEG": b"a",
        f"{root}/train/n01/n01_boxes.txt": b"boxes",
        f"{root}/train/n02/images/n02_0.JPEG": b"b",
        f"{root}/val/images/val_0.JPEG": b"c",
        f"{root}/val/images/val_1.JPEG": b"d",
        f"{root}/val/val_annotations.txt": b"val_0.JPEG\tn02\t0\t0\t9\t9\n"
        b"val_1.JPEG\tn01\t1\t1\t8\t8\n",
    }
    split = prepare.tiny_imagenet(_mirror(tmp_path, files))
    assert [(entry.label, Path(entry.path).name) for entry in split["train"]] == [
        ("n01", "n01_0.JPEG"),
        ("n02", "n02_0.JPEG"),
    ]
    assert [(entry.label, Path(entry.path).name) for entry in split["test"]] == [
        ("n02", "val_0.JPEG"),
        ("n01", "val_1.JPEG"),
    ]


def test_rsscn7_takes_its_class_folders_from_the_repository_top(tmp_path: Path) -> None:
    files = {
        f"{label}/{label[0]}{index:03d}.jpg": f"{label}{index}".encode()
        for label in ("aGrass", "bField")
        for index in range(5)
    }
    files["README.md"] = b"not an image"
    files["aGrass/nested/deeper.jpg"] = b"one level too deep"
    split = prepare.FOLDERS["rsscn7"](_mirror(tmp_path, files))
    # int(0.8 * 5) = 4 of each class train, the other one tests.
    assert sorted(entry.label for entry in split["train"]) == ["aGrass"] * 4 + ["bField"] * 4
    assert sorted(entry.label for entry in split["test"]) == ["aGrass", "bField"]
    every = {entry.path for entry in split["train"] + split["test"]}
    assert every == {name for name in files if name.endswith(".jpg") and name.count("/") == 1}


def test_caltech101_leaves_the_clutter_folder_out(tmp_path: Path) -> None:
    root = "101_ObjectCategories"
    files = {
        f"{root}/{label}/image_{index:04d}.jpg": f"{label}{index}".encode()
        for label in ("BACKGROUND_Google", "Faces", "accordion")
        for index in range(1, 6)
    }
    files["train.txt"] = b"accordion/image_0001.jpg\n"
    split = prepare.FOLDERS["caltech101"](_mirror(tmp_path, files))
    assert sorted(entry.label for entry in split["train"]) == ["Faces"] * 4 + ["accordion"] * 4
    assert sorted(entry.label for entry in split["test"]) == ["Faces", "accordion"]
