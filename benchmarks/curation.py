"""Curation measured on data with known answers (issue 16, item 2).

On a pool of labeled images (the demo digits' train split, and optionally a CIFAR-10
subset), the script plants what curation must find and measures what it finds:

* **near-duplicates**: copies of 2% of the images per kind (resized to half size,
  re-encoded as JPEG quality 30, cropped by 5% and resized back, colour-shifted) are
  written next to the originals; recall is the share of copies grouped with their
  original, precision the share of reported pairs that are planted pairs (per kind: among
  the reported pairs that touch a planted copy or its original). Groups already present
  in the untouched pool (pictures that look alike at 12x12) are counted apart.
* **label mistakes**: 5% of the labels flipped at random to another class; precision and
  recall of the 5% of images of lowest label quality, and of cleanlab's own flagged set,
  for the trained encoder, the same network at random init and raw pixels.
* **selection**: kNN and linear-probe accuracy on the test split when only the N images
  picked by TypiClust / k-center greedy / at random (mean of the seeds) are labeled.
* **complement**: ``--start`` random images are labelled already and ``--added`` more are
  picked: beside the labelled ones (``select(labelled=...)``, what ``curate --labelled``
  does), without knowing them, or at random; accuracy with all of them labeled.

Example (a demo-recipe run on the digits; results as JSON)::

    nice -n 19 python benchmarks/curation.py --run RUN --out benchmarks/results/curation.json
    nice -n 19 python benchmarks/curation.py --run CIFAR_RUN --cifar10 2000 ...
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from contrastive.curation.duplicates import duplicate_groups, file_digests
from contrastive.curation.label_issues import find_label_issues
from contrastive.curation.selection import kcenter_greedy, select, typiclust
from contrastive.curation.space import centred
from contrastive.data.demo import ensure_demo_digits
from contrastive.data.folder import ImageFolder
from contrastive.data.near_copies import image_fingerprints
from contrastive.embeddings import RawPixels, embed_folder
from contrastive.encoder import feature_extractor, load_encoder, random_init_encoder
from contrastive.evaluation.knn import knn_classify
from contrastive.evaluation.linear import fit_logistic_regression, standardization

COPY_KINDS = ("resized", "jpeg_q30", "cropped", "colour_shift")


def planted_copy(image: Image.Image, kind: str) -> tuple[Image.Image, dict[str, object]]:
    """One edited copy of ``image`` and the options to save it with."""
    side_x, side_y = image.size
    if kind == "resized":
        return image.resize((side_x // 2, side_y // 2), Image.Resampling.BILINEAR), {}
    if kind == "jpeg_q30":
        return image, {"quality": 30}
    if kind == "cropped":
        margin_x, margin_y = round(0.05 * side_x), round(0.05 * side_y)
        crop = image.crop((margin_x, 0, side_x, side_y - margin_y))
        return crop.resize((side_x, side_y), Image.Resampling.BICUBIC), {}
    # Colour shift: channel gains and a brightness offset.
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    shifted = pixels * np.array([1.1, 0.95, 0.85]) + 12.0
    return Image.fromarray(shifted.clip(0, 255).astype(np.uint8)), {}


def plant_duplicates(
    pool: ImageFolder, out: Path, fraction: float, seed: int
) -> tuple[list[Path], dict[int, tuple[int, str]]]:
    """Copies the pool into ``out`` and adds edited copies of ``fraction`` of it per kind.

    Returns:
        ``(paths, planted)``: every image file (originals first, in pool order), and
        ``{copy index: (original index, kind)}``.
    """
    shutil.rmtree(out, ignore_errors=True)
    rng = np.random.default_rng(seed)
    per_kind = max(1, round(fraction * len(pool)))
    chosen = rng.choice(len(pool), size=per_kind * len(COPY_KINDS), replace=False)
    paths = []
    for relative, source in zip(pool.relative_paths(), pool.paths):
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        paths.append(target)
    planted = {}
    for slot, original in enumerate(chosen.tolist()):
        kind = COPY_KINDS[slot // per_kind]
        copy, options = planted_copy(Image.open(paths[original]).convert("RGB"), kind)
        suffix = ".jpg" if kind == "jpeg_q30" else ".png"
        target = paths[original].with_name(f"{paths[original].stem}_copy_{kind}{suffix}")
        copy.save(target, **options)
        planted[len(paths)] = (original, kind)
        paths.append(target)
    return paths, planted


def reported_pairs(groups: list) -> set[tuple[int, int]]:
    """Every pair of images in the same reported group."""
    return {
        (min(a, b), max(a, b))
        for group in groups
        for a, b in combinations(group.members.tolist(), 2)
    }


def duplicate_scores(
    pool: ImageFolder, work: Path, seed: int, thresholds: list[float]
) -> dict[str, object]:
    """Precision and recall of duplicate groups per copy kind, at each threshold."""
    clock = time.perf_counter()
    paths, planted = plant_duplicates(pool, work / "planted_duplicates", 0.02, seed)
    fingerprints, digests = image_fingerprints(paths), file_digests(paths)
    originals = len(pool)
    truth = {(original, copy): kind for copy, (original, kind) in planted.items()}
    result: dict[str, object] = {"pool_images": originals, "copies": len(truth)}
    variants = [(f"threshold={t}", t, paths) for t in thresholds]
    # The fingerprint alone, as before the detail check of large images (thirty-ninth session).
    variants += [(f"threshold={t} fingerprint only", t, None) for t in thresholds[:1]]
    for name, threshold, detail_paths in variants:
        groups = duplicate_groups(fingerprints, digests, threshold, paths=detail_paths)
        pairs = reported_pairs(groups)
        # Pairs of two untouched originals: pictures alike before anything was planted.
        natural = {pair for pair in pairs if pair[1] < originals}
        found = pairs & set(truth)
        row: dict[str, object] = {
            "reported_pairs": len(pairs),
            "natural_pairs_in_pool": len(natural),
            "all_kinds": _precision_recall(found, pairs, natural, len(truth)),
        }
        for kind in COPY_KINDS:
            kind_truth = {pair for pair, k in truth.items() if k == kind}
            touched = {i for pair in kind_truth for i in pair}
            touching = {pair for pair in pairs if pair[0] in touched or pair[1] in touched}
            row[kind] = _precision_recall(pairs & kind_truth, touching, natural, len(kind_truth))
        row["groups"] = len(groups)
        row["natural_groups_in_pool"] = sum(int(g.members.max()) < originals for g in groups)
        result[name] = row
    result["seconds"] = round(time.perf_counter() - clock, 1)
    return result


def _precision_recall(found: set, reported: set, natural: set, planted: int) -> dict[str, float]:
    return {
        "recall": round(len(found) / max(1, planted), 3),
        "precision": round(len(found) / max(1, len(reported)), 3),
        "precision_without_natural_pairs": round(len(found) / max(1, len(reported - natural)), 3),
    }


def label_scores(features: dict[str, np.ndarray], labels: np.ndarray, classes: int, seed: int):
    """Precision and recall of suspected label mistakes on 5% flipped labels, per feature set."""
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(labels), size=round(0.05 * len(labels)), replace=False)
    given = labels.copy()
    given[flipped] = (labels[flipped] + rng.integers(1, classes, size=len(flipped))) % classes
    truth = set(flipped.tolist())
    scores = {}
    for name, values in features.items():
        clock = time.perf_counter()
        issues = find_label_issues(values, given, classes, seed=seed)
        top = set(issues.ranked(0.05).tolist())
        flagged = set(issues.issues.tolist())
        scores[name] = {
            "top5pct_precision": len(top & truth) / max(1, len(top)),
            "top5pct_recall": len(top & truth) / len(truth),
            "cleanlab_flagged": len(flagged),
            "cleanlab_precision": len(flagged & truth) / max(1, len(flagged)),
            "cleanlab_recall": len(flagged & truth) / len(truth),
            "suggested_is_true_class": float(np.mean(issues.suggested[flipped] == labels[flipped])),
            "seconds": round(time.perf_counter() - clock, 1),
        }
    return {"flipped": len(truth), "results": scores}


def accuracies(
    train: np.ndarray,
    labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    picks: np.ndarray,
    classes: int,
) -> tuple[float, float]:
    """kNN (k = min(20, N)) and linear-probe (wd = 1/N) top-1 with only ``picks`` labeled."""
    train_t, test_t = torch.from_numpy(train), torch.from_numpy(test)
    labels_t, test_labels_t = torch.from_numpy(labels), torch.from_numpy(test_labels)
    pick_t = torch.from_numpy(picks)
    knn = knn_classify(
        train_t[pick_t], labels_t[pick_t], test_t, min(20, len(picks)), 0.1, classes
    )[:, 0]
    mean, std = standardization(train_t)
    weight, bias = fit_logistic_regression(
        ((train_t - mean) / std)[pick_t], labels_t[pick_t], classes, 1.0 / len(picks), 200
    )
    linear = (((test_t - mean) / std) @ weight.T + bias).argmax(dim=1)
    return (
        float((knn == test_labels_t).float().mean()),
        float((linear == test_labels_t).float().mean()),
    )


def selection_scores(
    train: np.ndarray,
    labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    classes: int,
    counts: list[int],
    seeds: int,
) -> dict[str, object]:
    """Accuracy with N selected labels (TypiClust, k-center, random), mean over seeds."""
    space = centred(train)
    results: dict[str, object] = {}
    for count in counts:
        if count > len(train):
            continue
        row: dict[str, list[tuple[float, float]]] = {"typiclust": [], "kcenter": [], "random": []}
        for seed in range(seeds):
            row["typiclust"].append(
                accuracies(
                    train,
                    labels,
                    test,
                    test_labels,
                    typiclust(space, count, seed=seed).indices,
                    classes,
                )
            )
            picks = np.random.default_rng(seed).choice(len(train), size=count, replace=False)
            row["random"].append(accuracies(train, labels, test, test_labels, picks, classes))
        row["kcenter"].append(
            accuracies(
                train, labels, test, test_labels, kcenter_greedy(space, count).indices, classes
            )
        )
        results[str(count)] = {
            method: {
                "knn_top1": float(np.mean([v[0] for v in values])),
                "linear_top1": float(np.mean([v[1] for v in values])),
                "runs": len(values),
            }
            for method, values in row.items()
        }
    return results


def complement_scores(
    train: np.ndarray,
    labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    classes: int,
    start: int,
    added: int,
    seeds: int,
    first_round: str = "random",
    labelled: np.ndarray | None = None,
) -> dict[str, object]:
    """Accuracy when ``added`` picks join ``start`` labelled images: picks that know the
    labelled ones (``select(labelled=...)``), picks made without them (another k-means seed),
    random picks. ``first_round``: how the labelled ones were chosen, ``random`` or
    ``typiclust`` (a second round of ``curate --select``); ``labelled``: rows of ``train``
    labelled already, the same for every seed (then ``start`` and ``first_round`` are not
    used)."""
    space = centred(train)
    rows: dict[str, list[tuple[float, float]]] = {
        "start_only": [],
        "typiclust_beside": [],
        "typiclust_unaware": [],
        "kcenter_beside": [],
        "random": [],
    }
    overlap = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        if labelled is not None:
            given = np.asarray(labelled, dtype=np.int64)
        elif first_round == "typiclust":
            given = typiclust(space, start, seed=seed + seeds).indices
        else:
            given = rng.choice(len(train), size=start, replace=False)
        rest = np.setdiff1d(np.arange(len(train)), given)

        def score(picks: np.ndarray, _given: np.ndarray = given) -> tuple[float, float]:
            union = np.union1d(_given, picks)
            return accuracies(train, labels, test, test_labels, union, classes)

        rows["start_only"].append(score(np.zeros(0, np.int64)))
        beside = select(space, added, "typiclust", seed=seed, labelled=space[given])
        rows["typiclust_beside"].append(score(beside.indices))
        unaware = typiclust(space, added, seed=seed).indices
        overlap.append(len(np.intersect1d(unaware, given)))
        rows["typiclust_unaware"].append(score(unaware))
        kcenter = select(space, added, "kcenter", labelled=space[given])
        rows["kcenter_beside"].append(score(kcenter.indices))
        rows["random"].append(score(rng.choice(rest, size=added, replace=False)))
    return {
        "start": start if labelled is None else len(labelled),
        "first_round": first_round if labelled is None else "given",
        "added": added,
        "unaware_picks_already_labelled": float(np.mean(overlap)),
        "results": {
            method: {
                "knn_top1": float(np.mean([v[0] for v in values])),
                "linear_top1": float(np.mean([v[1] for v in values])),
                "runs": len(values),
            }
            for method, values in rows.items()
        },
    }


def embed_sets(run: Path, folder: Path) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Trained, random-init and raw-pixel features of a folder, with labels and classes."""
    encoder = load_encoder(run)
    embedded = embed_folder(
        folder,
        encoder.view_config,
        {
            "trained": feature_extractor(encoder),
            "random_init": feature_extractor(random_init_encoder(encoder, 0)),
            "raw_pixels": RawPixels(),
        },
        progress=False,
    )
    first = embedded["trained"]
    return {n: e.embeddings for n, e in embedded.items()}, first.labels, list(first.classes)


def cifar10_subset(count: int, work: Path) -> tuple[Path, Path]:
    """``count`` train and ``count // 2`` test images of the extracted CIFAR-10 (class-balanced)."""
    source = Path.home() / ".cache" / "contrastive" / "cifar10"
    for split, size in (("train", count), ("test", count // 2)):
        target = work / f"cifar10_{count}" / split
        if target.is_dir():
            continue
        for class_folder in sorted((source / split).iterdir()):
            (target / class_folder.name).mkdir(parents=True)
            for image in sorted(class_folder.iterdir())[: size // 10]:
                shutil.copy2(image, target / class_folder.name / image.name)
    return work / f"cifar10_{count}" / "train", work / f"cifar10_{count}" / "test"


def measure(name: str, run: Path, train: Path, test: Path, args: argparse.Namespace) -> dict:
    """Every part of ``args.parts`` on one pool (``train``) and its test split."""
    clock = time.perf_counter()
    pool = ImageFolder.scan(train)
    report: dict[str, object] = {"data": name, "run": str(run), "train": str(train)}
    if "duplicates" in args.parts:
        report["duplicates"] = duplicate_scores(pool, args.work / name, args.seed, args.thresholds)
        print(json.dumps(report["duplicates"], indent=1), flush=True)
    if args.parts & {"labels", "selection", "complement"}:
        features, labels, classes = embed_sets(run, train)
    if "labels" in args.parts:
        report["label_mistakes"] = label_scores(features, labels, len(classes), args.seed)
        print(json.dumps(report["label_mistakes"], indent=1), flush=True)
    if args.parts & {"selection", "complement"}:
        test_features, test_labels, _ = embed_sets(run, test)
    if "complement" in args.parts:
        report["complement"] = complement_scores(
            features["trained"],
            labels,
            test_features["trained"],
            test_labels,
            len(classes),
            args.start,
            args.added,
            args.seeds,
            args.first_round,
        )
        print(json.dumps(report["complement"], indent=1), flush=True)
    if "selection" in args.parts:
        report["selection"] = selection_scores(
            features["trained"],
            labels,
            test_features["trained"],
            test_labels,
            len(classes),
            args.counts,
            args.seeds,
        )
        print(json.dumps(report["selection"], indent=1), flush=True)
    report["seconds"] = round(time.perf_counter() - clock, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder for the digits")
    parser.add_argument("--cifar10", type=int, default=0, help="also a CIFAR-10 subset of N")
    parser.add_argument("--cifar10-run", type=Path, help="run folder for CIFAR-10")
    parser.add_argument("--work", type=Path, default=Path("/work/data/curation/bench"))
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--counts", default="10,20,50,100,200")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=100, help="complement: labelled already")
    parser.add_argument("--added", type=int, default=100, help="complement: images picked")
    parser.add_argument(
        "--first-round",
        choices=("random", "typiclust"),
        default="random",
        help="complement: how the labelled images were chosen",
    )
    parser.add_argument("--thresholds", default="0.92,0.95,0.97", help="near-copy thresholds")
    parser.add_argument("--skip-digits", action="store_true", help="only the CIFAR-10 subset")
    parser.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also a folder of your own (with --parts duplicates: no run or test split used)",
    )
    parser.add_argument(
        "--parts", default="duplicates,labels,selection", help="what to measure (comma-separated)"
    )
    args = parser.parse_args()
    args.counts = [int(c) for c in args.counts.split(",")]
    args.thresholds = [float(t) for t in args.thresholds.split(",")]
    args.parts = set(args.parts.split(","))
    reports = []
    if not args.skip_digits:
        digits = ensure_demo_digits()
        reports.append(measure("digits", args.run, digits / "train", digits / "test", args))
    for folder in args.folder:
        name, _, path = folder.partition("=")
        reports.append(measure(name, args.run, Path(path), Path(path), args))
    if args.cifar10:
        train, test = cifar10_subset(args.cifar10, args.work)
        reports.append(measure("cifar10", args.cifar10_run or args.run, train, test, args))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(reports, indent=2) + "\n")


if __name__ == "__main__":
    main()
