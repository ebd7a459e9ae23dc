"""What to label first, at scale: full against mini-batch k-means in TypiClust.

TypiClust clusters the folder into as many k-means clusters as images to pick. Full k-means
costs N x clusters x D per iteration: 169 s for 1,000 picks of 255,000 images on 2 CPU
cores. Above ``FULL_KMEANS_MAX_CLUSTERS`` clusters ``contrastive curate`` runs mini-batch
k-means, as the TypiClust authors' code does. This script measures both, in one process:

* **quality** (``--train`` / ``--test``: embeddings of a labeled folder pair written by
  ``contrastive embed``): kNN (k = min(20, N), T = 0.1) and linear-probe top-1 on the test
  split when only the N picked training images are labeled, mean of ``--seeds`` seeds, with
  random picks as the floor (the protocol of ``benchmarks/curation.py``);
* **time** (``--rows``): TypiClust on synthetic embeddings (a mixture of Gaussian blobs on
  the unit sphere, 128-d) of that many rows, each clustering at each ``--time-counts``.

Example::

    contrastive embed --run RUN --data cifar10/train --out train.npz
    contrastive embed --run RUN --data cifar10/test --out test.npz
    python benchmarks/selection_scale.py --train train.npz --test test.npz \\
        --rows 255000 --out benchmarks/results/selection_scale.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

# The accuracy protocol of the curation benchmark, so both tables read alike.
from curation import accuracies

from contrastive.curation.selection import FULL_KMEANS_MAX_CLUSTERS, typiclust
from contrastive.curation.space import centred
from contrastive.embeddings import load_embeddings

#: ``full_kmeans_max_clusters`` of each clustering: full k-means always, mini-batch always.
CLUSTERINGS = {"full": 1 << 62, "minibatch": 0}


def quality(train_file: Path, test_file: Path, counts: list[int], seeds: int) -> dict:
    """Accuracy with N labeled picks per clustering (and random), mean over seeds."""
    train, test = load_embeddings(train_file), load_embeddings(test_file)
    classes = len(train.classes)
    space = centred(train.embeddings)
    rows: dict[str, dict] = {}
    for count in counts:
        row: dict[str, dict] = {}
        for name, full_max in CLUSTERINGS.items():
            scores, seconds = [], []
            for seed in range(seeds):
                start = time.perf_counter()
                picks = typiclust(space, count, seed=seed, full_kmeans_max_clusters=full_max)
                seconds.append(time.perf_counter() - start)
                scores.append(
                    accuracies(
                        train.embeddings,
                        train.labels,
                        test.embeddings,
                        test.labels,
                        picks.indices,
                        classes,
                    )
                )
            row[name] = _mean(scores) | {"seconds": round(float(np.mean(seconds)), 2)}
        randoms = [
            accuracies(
                train.embeddings,
                train.labels,
                test.embeddings,
                test.labels,
                np.random.default_rng(seed).choice(len(space), count, replace=False),
                classes,
            )
            for seed in range(seeds)
        ]
        row["random"] = _mean(randoms)
        rows[str(count)] = row
        print(f"N={count}: {json.dumps(row)}", flush=True)
    return {"train": str(train_file), "test": str(test_file), "seeds": seeds, "rows": rows}


def _mean(scores: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "knn_top1": round(100 * float(np.mean([s[0] for s in scores])), 2),
        "linear_top1": round(100 * float(np.mean([s[1] for s in scores])), 2),
    }


def synthetic(rows: int, dims: int = 128, blobs: int = 2000, seed: int = 0) -> np.ndarray:
    """``(rows, dims)`` float32 points around ``blobs`` random directions."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((blobs, dims)).astype(np.float32)
    points = centres[rng.integers(blobs, size=rows)]
    return points + 0.5 * rng.standard_normal((rows, dims)).astype(np.float32)


def timing(rows: int, counts: list[int], skip_full_above: int) -> dict:
    """Seconds of TypiClust on ``rows`` synthetic rows, per pick count and clustering."""
    data = synthetic(rows)
    results: dict[str, dict] = {}
    for count in counts:
        row = {}
        for name, full_max in CLUSTERINGS.items():
            if name == "full" and count > skip_full_above:
                row[name] = None
                continue
            start = time.perf_counter()
            picks = typiclust(data, count, full_kmeans_max_clusters=full_max)
            row[name] = {
                "seconds": round(time.perf_counter() - start, 1),
                "covering_radius": round(float(picks.radii[-1]), 4),
                "distinct_clusters": int((picks.clusters >= 0).sum()),
            }
        results[str(count)] = row
        print(f"{rows} rows, N={count}: {json.dumps(row)}", flush=True)
    return {"rows": rows, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, help="embeddings of the labeled training folder")
    parser.add_argument("--test", type=Path, help="embeddings of the labeled test folder")
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, help="rows of the synthetic timing (none: skip)")
    parser.add_argument("--time-counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--skip-full-above",
        type=int,
        default=1000,
        help="time full k-means only up to this many picks (hours beyond)",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    results: dict[str, object] = {"full_kmeans_max_clusters": FULL_KMEANS_MAX_CLUSTERS}
    if args.train is not None and args.test is not None:
        results["quality"] = quality(args.train, args.test, args.counts, args.seeds)
    if args.rows:
        results["timing"] = timing(args.rows, args.time_counts, args.skip_full_above)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
