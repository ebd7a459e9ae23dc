"""MoCo's queue against the size of the folder: kNN top-1 and the loss's last value.

Trains MoCo with the CPU-budget recipe (fixed epochs, so that a busy machine changes the
time, not the steps) on a labelled folder for each queue size and seed, then scores the
final weights with kNN (k=20, T=0.1; the folder itself is the bank) on a labelled test
folder. ``--queue-size 0`` stands for the planned size (unset: a quarter of the images).

Example (thirty-fourth session: 1,000 CIFAR-10 training images, 100 per class, and 1,000
test images)::

    python benchmarks/moco_queue.py --train train1k --test test1k --out runs_moco \\
        --queue-sizes 4096 896 0 --seeds 0 1 --epochs 40
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import replace
from pathlib import Path

from common import embed_pair, knn_top1

from contrastive.encoder import feature_extractor, load_encoder
from contrastive.recipes import cpu_budget_recipe
from contrastive.training.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, required=True, help="labelled training folder")
    parser.add_argument("--test", type=Path, required=True, help="labelled test folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs")
    parser.add_argument("--queue-sizes", type=int, nargs="+", default=[4096, 0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    base = cpu_budget_recipe(data=str(args.train), time_budget=None)
    for seed in args.seeds:
        for queue_size in args.queue_sizes:
            run_dir = args.out / f"queue{queue_size}_seed{seed}"
            config = replace(
                base,
                out=str(run_dir),
                seed=seed,
                epochs=args.epochs,
                method=replace(base.method, name="moco", queue_size=queue_size or None),
            )
            result = train(config) if not (run_dir / "backbone.pt").is_file() else None
            encoder = load_encoder(run_dir)
            pair = embed_pair(
                feature_extractor(encoder), args.train, args.test, encoder.view_config
            )
            with open(run_dir / "metrics.csv") as file:
                losses = [float(row["loss"]) for row in csv.DictReader(file) if row.get("loss")]
            queue = result.config.method.queue_size if result else queue_size
            print(
                f"queue {queue_size or 'planned'} ({queue}) seed {seed}: kNN top-1 "
                f"{100 * knn_top1(pair, k=20):.1f}, loss first {losses[0]:.2f} min "
                f"{min(losses):.2f} last {losses[-1]:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
