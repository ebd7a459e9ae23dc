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
