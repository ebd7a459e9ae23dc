"""What to label next, beside the images labelled already (``curate --labelled``).

From embeddings written by ``contrastive embed``: an unlabeled pool (its true classes from a
CSV of ``name,class`` rows, for scoring only), the images labelled already (a folder with
class sub-folders) and a labelled test split. For each seed, ``--added`` images are picked
from the pool by TypiClust beside the labelled ones, by TypiClust without knowing them, by
k-center greedy beside them and at random; the test kNN (k = min(20, N)) and linear-probe
top-1 with the labelled images plus the picks labeled, mean over seeds
(:func:`curation.complement_scores`).

Example (the flowers of the thirty-second session)::

    python benchmarks/selection_complement.py --pool pool.npz --pool-classes truth.csv \\
        --labelled labelled.npz --test test.npz --added 20,40 --seeds 8
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from curation import complement_scores

from contrastive.embeddings import load_embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=Path, required=True, help="embeddings of the pool")
    parser.add_argument("--pool-classes", type=Path, required=True, help="CSV: name,class")
    parser.add_argument("--labelled", type=Path, required=True, help="embeddings, labelled")
    parser.add_argument("--test", type=Path, required=True, help="embeddings, labelled test")
    parser.add_argument("--added", default="20,40", help="images to pick (comma-separated)")
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    pool, labelled, test = (load_embeddings(p) for p in (args.pool, args.labelled, args.test))
    classes = [str(name) for name in test.classes]
    with open(args.pool_classes, newline="") as handle:
        truth = {row["name"]: classes.index(row["class"]) for row in csv.DictReader(handle)}
    pool_labels = np.array([truth[Path(path).name] for path in pool.paths])
    labelled_labels = np.array([classes.index(str(labelled.classes[i])) for i in labelled.labels])
    train = np.concatenate([pool.embeddings, labelled.embeddings])
    labels = np.concatenate([pool_labels, labelled_labels])
    given = np.arange(len(pool), len(train))
    for added in (int(value) for value in args.added.split(",")):
        result = complement_scores(
            train,
            labels,
            test.embeddings,
            test.labels,
            len(classes),
            0,
            added,
            args.seeds,
            labelled=given,
        )
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
