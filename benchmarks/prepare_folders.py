"""Build the labelled benchmark folders of issue 12 from their repositories' mirrors.

``benchmarks/folders.py`` scores the planner on folders that come from public repositories
(the ``fetch`` tool brings a mirror: a git directory without a work tree). Each session
built them by hand from the rules written in ``benchmarks/README.md``; this script applies
those rules, so that a row can be re-run on the same images. It reads the files straight
from the mirror's objects (``git cat-file``) and writes ``OUT/train/<class>/`` and
``OUT/test/<class>/``; the images are never copied into this repository.

Rules (classes and files in sorted order; where a split is drawn, one ``random.Random(0)``
shuffles each class's list in turn unless said). Each reproduces the image counts of the
rows in ``results/folders.jsonl`` and their raw-pixel kNN top-1 (``folders.py --row raw``:
brain MRI 71.61, clothing 39.52, flowers 40.46, TrashNet 38.42, EuroSAT 34.59, FER
38.01, Imagenette 34.39, checked in the forty-third session; STL-10 33.1 and Tiny ImageNet
6.2, checked in the forty-fourth):

* ``brain-mri`` (github:KomalChaudhari8/BRAIN_TUMOR_APP): ``Training/`` and ``Testing/``,
  byte-identical files dropped: a training file whose bytes came earlier in training, a
  test file whose bytes are in training or came earlier in test (5,501 / 1,092).
* ``caltech101`` (github:MachineLearning2020/Homework2-Caltech101):
  ``101_ObjectCategories/``, the 101 object classes (31-800 photos each, about 200-500 px,
  some grayscale) without the clutter folder ``BACKGROUND_Google``, as ``flowers`` (6,907 /
  1,770).
* ``clothing`` (github:alexeygrigorev/clothing-dataset-small): ``train/`` and
  ``validation/`` as training set, ``test/`` as test set (3,409 / 372).
* ``flowers`` (github:martinwestin/flower_classification): ``flowers/``, the first
  ``int(0.8 n)`` of each shuffled class for training (3,452 / 865).
* ``trash`` (github:congduytran12/Trash-Classification-): ``dataset-resized/``, each class
  shuffled by a ``random.Random(0)`` of its own, the first ``round(0.8 n)`` for training
  (2,022 / 505).
* ``dtd`` (github:pan8915/DeepTexture): ``images/``, 10 of the Describable Textures
  Dataset's 47 classes (120 photos each, 300-640 px), as ``flowers`` (960 / 240).
* ``eurosat`` (github:arson48/CNN-on-Eurosat-data): ``EuroSAT/``, as ``flowers``
  (21,600 / 5,400).
* ``fer`` (github:Harsh9524/emotion-analysi-CV): ``train/`` and ``test/`` (28,709 / 3,589).
* ``imagenette`` (github:thunderInfy/imagenette): ``train/`` and ``val/`` (9,469 / 3,925).
* ``stl10`` (github:GooMinjae/STL-10_image_classification):
  ``image-classification-competition-1/train_data/`` labelled by ``train_data.csv``
  (labels 0-9 in STL-10's order, named), split as ``flowers`` (4,000 / 1,000); and
  ``unlabeled_all/``: those 5,000 and the 8,000 of ``test_data/`` (13,000), for
  ``folders.py --train-data``.
* ``rsscn7`` (github:palewithout/RSSCN7): the class folders at the top (``aGrass/`` ...
  ``gParking/``, 400 aerial scenes of 400 x 400 px each), as ``flowers`` (2,240 / 560).
* ``tiny-imagenet`` (github:seshuad/IMagenet): ``tiny-imagenet-200/train/<wnid>/images/``
  and ``val/images/`` sorted into classes by ``val/val_annotations.txt``
  (100,000 / 10,000).

Example::

    python benchmarks/prepare_folders.py brain-mri --mirror MIRROR_GIT_DIR --out ~/data/mri
"""

from __future__ import annotations

import argparse
import random
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: File name endings taken as images (``.DS_Store`` and notebooks are not).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Entry:
    """One image file in the mirror: its path there, its class and its blob (its bytes)."""

    path: str
    label: str
    blob: str


Split = dict[str, list[Entry]]


def tree(git_dir: Path, folder: str, commit: str = "HEAD") -> list[tuple[str, str]]:
    """``(path, blob)`` of every image file under ``folder`` at ``commit``, at any depth."""
    output = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "-r", commit, "--", folder],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    files = []
    for line in output.splitlines():
        meta, path = line.split("\t", 1)
        if meta.split()[1] == "blob" and path.lower().endswith(IMAGE_SUFFIXES):
            files.append((path, meta.split()[2]))
    if not files:
        raise SystemExit(f"no images under {folder}/ in {git_dir} at {commit}")
    return files


def listed(git_dir: Path, folder: str, commit: str = "HEAD") -> list[Entry]:
    """The images under ``folder/<class>/`` at ``commit``, sorted by path (``"."``: class
    folders at the repository's top)."""
    depth = len(Path(folder).parts) + 2  # folder/<class>/<file> only
    entries = [
        Entry(path, path.split("/")[-2], blob)
        for path, blob in tree(git_dir, folder, commit)
        if len(path.split("/")) == depth
    ]
    if not entries:
        raise SystemExit(f"no images under {folder}/<class>/ in {git_dir} at {commit}")
    return sorted(entries, key=lambda entry: entry.path)


def text_file(git_dir: Path, path: str, commit: str = "HEAD") -> str:
    """The contents of the text file ``path`` at ``commit``."""
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "cat-file", "blob", f"{commit}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def drawn_split(
    entries: list[Entry], share: Callable[[int], int], seed_per_class: bool = False
) -> Split:
    """Each class's sorted list shuffled in turn by one ``random.Random(0)`` (or, with
    ``seed_per_class``, by a new one per class); the first ``share(n)`` for training."""
    rng = random.Random(0)
    split: Split = {"train": [], "test": []}
    for label in sorted({entry.label for entry in entries}):
        members = [entry for entry in entries if entry.label == label]
        (random.Random(0) if seed_per_class else rng).shuffle(members)
        cut = share(len(members))
        split["train"] += members[:cut]
        split["test"] += members[cut:]
    return split


def brain_mri(git_dir: Path) -> Split:
    seen: set[str] = set()
    split: Split = {"train": [], "test": []}
    for name, folder in (("train", "Training"), ("test", "Testing")):
        for entry in listed(git_dir, folder):
            if entry.blob not in seen:
                seen.add(entry.blob)
                split[name].append(entry)
    return split


def clothing(git_dir: Path) -> Split:
    return {
        "train": listed(git_dir, "train") + listed(git_dir, "validation"),
        "test": listed(git_dir, "test"),
    }


#: STL-10's classes in the order of its labels 0-9 (also their sorted order).
STL10_CLASSES = (
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
)


def caltech101(git_dir: Path) -> Split:
    objects = listed(git_dir, "101_ObjectCategories")
    # Caltech-101's clutter folder, not an object class.
    return drawn_split(
        [entry for entry in objects if entry.label != "BACKGROUND_Google"],
        lambda n: int(0.8 * n),
    )


def stl10(git_dir: Path) -> Split:
    root = "image-classification-competition-1"
    labels = {}
    for line in text_file(git_dir, f"{root}/train_data.csv").splitlines()[1:]:
        if line.strip():
            label, name = line.strip().split(",")
            labels[name] = STL10_CLASSES[int(label)]
    labeled = sorted(tree(git_dir, f"{root}/train_data"))
    missing = sorted(set(labels) - {Path(path).name for path, _ in labeled})
    if missing:
        raise SystemExit(f"train_data.csv names {len(missing)} files not in train_data/")
    entries = [
        Entry(path, labels[Path(path).name], blob)
        for path, blob in labeled
        if Path(path).name in labels
    ]
    split = drawn_split(entries, lambda n: int(0.8 * n))
    # The run trains on every image, labelled or not; the source folder keeps names apart.
    split["unlabeled_all"] = [Entry(path, "train_data", blob) for path, blob in labeled] + [
        Entry(path, "test_data", blob) for path, blob in sorted(tree(git_dir, f"{root}/test_data"))
    ]
    return split


def tiny_imagenet(git_dir: Path) -> Split:
    root = "tiny-imagenet-200"
    train = [
        Entry(path, path.split("/")[-3], blob)
        for path, blob in sorted(tree(git_dir, f"{root}/train"))
        if path.split("/")[-2] == "images"  # train/<wnid>/images/<file>
    ]
    labels = {}
    for line in text_file(git_dir, f"{root}/val/val_annotations.txt").splitlines():
        if line.strip():
            name, wnid = line.split("\t")[:2]
            labels[name] = wnid
    validation = [
        Entry(path, labels[Path(path).name], blob)
        for path, blob in sorted(tree(git_dir, f"{root}/val/images"))
        if Path(path).name in labels
    ]
    return {"train": train, "test": validation}


FOLDERS: dict[str, Callable[[Path], Split]] = {
    "brain-mri": brain_mri,
    "caltech101": caltech101,
    "clothing": clothing,
    "flowers": lambda git_dir: drawn_split(listed(git_dir, "flowers"), lambda n: int(0.8 * n)),
    "trash": lambda git_dir: drawn_split(
        listed(git_dir, "dataset-resized"), lambda n: round(0.8 * n), seed_per_class=True
    ),
    "dtd": lambda git_dir: drawn_split(listed(git_dir, "images"), lambda n: int(0.8 * n)),
    "eurosat": lambda git_dir: drawn_split(listed(git_dir, "EuroSAT"), lambda n: int(0.8 * n)),
    "fer": lambda git_dir: {"train": listed(git_dir, "train"), "test": listed(git_dir, "test")},
    "imagenette": lambda git_dir: {
        "train": listed(git_dir, "train"),
        "test": listed(git_dir, "val"),
    },
    "rsscn7": lambda git_dir: drawn_split(listed(git_dir, "."), lambda n: int(0.8 * n)),
    "stl10": stl10,
    "tiny-imagenet": tiny_imagenet,
}


def write_split(git_dir: Path, split: Split, out: Path) -> None:
    """Writes each entry's bytes to ``out/<split>/<class>/<file name>``."""
    with subprocess.Popen(
        ["git", "--git-dir", str(git_dir), "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as batch:
        assert batch.stdin is not None and batch.stdout is not None
        for name, entries in split.items():
            for entry in entries:
                batch.stdin.write(f"{entry.blob}\n".encode())
                batch.stdin.flush()
                header = batch.stdout.readline().split()
                data = batch.stdout.read(int(header[2]))
                batch.stdout.read(1)  # the newline after the contents
                target = out / name / entry.label / Path(entry.path).name
                if target.exists():
                    raise SystemExit(f"two files would be {target}: {entry.path}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        batch.stdin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(FOLDERS))
    parser.add_argument("--mirror", type=Path, required=True, help="the mirror's git directory")
    parser.add_argument("--out", type=Path, required=True, help="new folder to write")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"--out {args.out} is not empty")
    split = FOLDERS[args.name](args.mirror)
    write_split(args.mirror, split, args.out)
    for name, entries in split.items():
        classes = sorted({entry.label for entry in entries})
        print(f"{args.out / name}: {len(entries):,} images in {len(classes)} classes")


if __name__ == "__main__":
    main()
