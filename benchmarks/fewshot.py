"""Few-label evaluation benchmark (issue 14): speed on synthetic features, or real encoders.

Speed (after embedding; 3 feature sets of 50k/10k x 512, 10 classes, 7 counts x 5 draws x
2 protocols)::

    python benchmarks/fewshot.py --synthetic --sets 3

Real encoders on CIFAR-10 (a thin wrapper over ``contrastive eval fewshot``), e.g. the
10-minute run against its baselines and Lightly's example recipe::

    python benchmarks/fewshot.py -- --run RUN --train ~/.cache/contrastive/cifar10/train \
        --test ~/.cache/contrastive/cifar10/test --baselines --encoder lightly=PEER.ckpt \
        --counts 1,10,100,all --out benchmarks/results/fewshot_cifar10
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from contrastive.cli import main as cli_main
from contrastive.evaluation.fewshot import few_label_evaluation


def load_average() -> str:
    """The machine's 1/5/15-minute load (other processes make timings meaningless)."""
    with open("/proc/loadavg") as handle:
        return handle.read().strip()


def synthetic(sets: int, train: int, test: int, dim: int, classes: int) -> None:
    """Times :func:`few_label_evaluation` on Gaussian class clouds, one feature set at a time."""
    generator = torch.Generator().manual_seed(0)
    train_labels = torch.arange(train) % classes
    test_labels = torch.arange(test) % classes
    print(f"load before: {load_average()}, threads {torch.get_num_threads()}")
    total = time.perf_counter()
    for index in range(sets):
        centres = torch.randn(classes, dim, generator=generator)
        train_features = centres[train_labels] + 3 * torch.randn(train, dim, generator=generator)
        test_features = centres[test_labels] + 3 * torch.randn(test, dim, generator=generator)
        start, cpu = time.perf_counter(), time.process_time()
        result = few_label_evaluation(train_features, train_labels, test_features, test_labels)
        print(
            f"set {index}: {time.perf_counter() - start:.1f} s wall, "
            f"{time.process_time() - cpu:.1f} s CPU; "
            f"kNN 1/class {100 * result.scores['all']['knn'][1].mean:.1f}%"
        )
    print(f"total {time.perf_counter() - total:.1f} s; load after: {load_average()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="time on synthetic features")
    parser.add_argument("--sets", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument("--test-size", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("cli", nargs=argparse.REMAINDER, help="-- then `eval fewshot` flags")
    args = parser.parse_args()
    if args.synthetic:
        synthetic(args.sets, args.train_size, args.test_size, args.dim, args.classes)
    else:
        flags = [a for a in args.cli if a != "--"]
        sys.exit(cli_main(["eval", "fewshot", *flags]))
