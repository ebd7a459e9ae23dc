"""Wall-clock time of the evaluators: kNN (50k x 10k x 512) and the linear probe (50k x 512).

Run from the repository root::

    python benchmarks/evaluators.py                      # random clustered features
    python benchmarks/evaluators.py --train a.npz --test b.npz   # real embeddings
    python benchmarks/evaluators.py --cifar ~/.cache/contrastive/cifar10 --skip-timing
        # raw-pixel 1-NN (L2) sanity figure on CIFAR-10 (35.3% expected)
    python benchmarks/evaluators.py --vs-lightly --dims 128,512 --repeats 3
        # our kNN against Lightly's knn_predict, k=200, T=0.1, same process

Prints one Markdown row per run. Each evaluator is timed once, after a small warm-up, so
the numbers vary with machine load; the thread count is part of the row. ``--vs-lightly``
interleaves the two kNN implementations and reports median wall and CPU (process) time
ratios: on a shared machine the CPU-time ratio is the steadier one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict

from contrastive.embeddings import RawPixels, embed_folder, load_embeddings
from contrastive.evaluation.knn import knn_rankings
from contrastive.evaluation.labels import labeled_pair
from contrastive.evaluation.linear import linear_probe
from contrastive.evaluation.metrics import topk_accuracy
from contrastive.views.config import view_preset


def clustered_features(
    count: int, dim: int, num_classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative features around class centres (a stand-in for pooled ReLU features)."""
    generator = torch.Generator().manual_seed(seed)
    centers = 0.15 * torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, num_classes, (count,), generator=generator)
    return torch.relu(centers[labels] + torch.randn(count, dim, generator=generator)), labels


def normalised_features(
    count: int, dim: int, num_classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform random unit vectors with random labels (no structure at all)."""
    generator = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(count, dim, generator=generator), dim=1)
    return features, torch.randint(0, num_classes, (count,), generator=generator)


def lightly_knn(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1000,
) -> torch.Tensor:
    """Lightly's ``knn_predict`` over test batches, as its kNN benchmark module feeds it."""
    bank = F.normalize(train, dim=1).T.contiguous()
    return torch.cat(
        [
            knn_predict(batch, bank, train_labels, num_classes, k, temperature)
            for batch in F.normalize(test, dim=1).split(batch_size)
        ]
    )


def compare_with_lightly(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    num_classes: int,
    repeats: int,
    k: int = 200,
) -> dict[str, float]:
    """Median wall and CPU seconds of ours and Lightly's kNN, run alternately, and agreement.

    Returns:
        ``ours_s``, ``lightly_s``, ``ratio`` (Lightly / ours, wall), ``cpu_ratio`` (the
        same on process time), ``top1_agreement`` and ``ranking_agreement`` (fractions of
        test rows whose prediction / whole class ranking is identical).
    """
    knn_rankings(train[:2000], train_labels[:2000], test[:200], (k,), num_classes=num_classes)
    times: dict[str, list[tuple[float, float]]] = {"ours": [], "lightly": []}
    runs = {
        "ours": lambda: knn_rankings(train, train_labels, test, (k,), num_classes=num_classes)[k],
        "lightly": lambda: lightly_knn(train, train_labels, test, num_classes, k),
    }
    answers = {}
    for repeat in range(repeats):
        # Alternate who goes first, so that a drift in machine load favours neither.
        for name in ("ours", "lightly") if repeat % 2 == 0 else ("lightly", "ours"):
            wall, cpu = time.perf_counter(), time.process_time()
            answers[name] = runs[name]()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    ours, lightly = answers["ours"], answers["lightly"]
    pairs = list(zip(times["ours"], times["lightly"]))
    return {
        "ours_s": statistics.median(w for w, _ in times["ours"]),
        "lightly_s": statistics.median(w for w, _ in times["lightly"]),
        "ratio": statistics.median(theirs[0] / mine[0] for mine, theirs in pairs),
        "cpu_ratio": statistics.median(theirs[1] / mine[1] for mine, theirs in pairs),
        "top1_agreement": float((ours[:, 0] == lightly[:, 0]).float().mean()),
        "ranking_agreement": float((ours == lightly).all(dim=1).float().mean()),
    }


def lightly_table(args: argparse.Namespace) -> None:
    """One Markdown row per feature kind and width: ours against Lightly's ``knn_predict``."""
    print(f"load before: {Path('/proc/loadavg').read_text().strip()}")
    print(
        "| features | threads | train x test x dim | ours s | Lightly s | Lightly/ours wall "
        "| Lightly/ours CPU | top-1 agreement | ranking agreement |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    makers = {"random unit": normalised_features, "random clustered": clustered_features}
    for dim in args.dims:
        for kind, make in makers.items():
            train, train_labels = make(args.num_train, dim, args.classes, 1)
            test, _ = make(args.num_test, dim, args.classes, 2)
            result = compare_with_lightly(train, train_labels, test, args.classes, args.repeats)
            print(
                f"| {kind} | {torch.get_num_threads()} | {len(train)} x {len(test)} x {dim} "
                f"| {result['ours_s']:.2f} | {result['lightly_s']:.2f} | {result['ratio']:.2f} "
                f"| {result['cpu_ratio']:.2f} | {100 * result['top1_agreement']:.3f}% "
                f"| {100 * result['ranking_agreement']:.3f}% |",
                flush=True,
            )
    print(f"load after: {Path('/proc/loadavg').read_text().strip()}")


def time_knn(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    ks: tuple[int, ...],
) -> tuple[float, dict[int, float]]:
    """Seconds for one kNN pass over all ``ks``, and top-1 per k."""
    knn_rankings(train[:2000], train_labels[:2000], test[:200], ks)  # warm-up
    started = time.perf_counter()
    rankings = knn_rankings(train, train_labels, test, ks)
    seconds = time.perf_counter() - started
    return seconds, {k: topk_accuracy(rankings[k], test_labels, (1,))[1] for k in ks}


def time_linear(
    train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor
) -> tuple[float, float, float]:
    """Seconds for the whole probe (weight-decay selection + final fit), top-1, chosen wd."""
    started = time.perf_counter()
    result = linear_probe(train, train_labels, test, test_labels)
    return time.perf_counter() - started, result.summary["top1"], result.weight_decay


def raw_pixel_one_nn(cifar: Path, batch_size: int, num_workers: int) -> float:
    """Top-1 of 1-NN in L2 on the eval-transformed CIFAR-10 pixels (train -> test)."""
    views = view_preset("cifar")
    train = embed_folder(
        cifar / "train", views, {"p": RawPixels()}, batch_size=batch_size, num_workers=num_workers
    )["p"]
    test = embed_folder(
        cifar / "test", views, {"p": RawPixels()}, batch_size=batch_size, num_workers=num_workers
    )["p"]
    pair = labeled_pair(train, test)
    ranking = knn_rankings(
        pair.train_features, pair.train_labels, pair.test_features, (1,), metric="euclidean"
    )[1]
    return topk_accuracy(ranking, pair.test_labels, (1,))[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, help="training embeddings .npz")
    parser.add_argument("--test", type=Path, help="test embeddings .npz")
    parser.add_argument("--num-train", type=int, default=50_000)
    parser.add_argument("--num-test", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--skip-linear", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--cifar", type=Path, help="CIFAR-10 folder with train/ and test/")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--vs-lightly", action="store_true", help="kNN against knn_predict")
    parser.add_argument(
        "--dims", type=lambda text: [int(d) for d in text.split(",")], default=[128, 512]
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per side")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.vs_lightly:
        lightly_table(args)
        return
    if not args.skip_timing:
        if args.train and args.test:
            pair = labeled_pair(load_embeddings(args.train), load_embeddings(args.test))
            data = (pair.train_features, pair.train_labels, pair.test_features, pair.test_labels)
            source = f"{args.train.name}/{args.test.name}"
        else:
            data = (
                *clustered_features(args.num_train, args.dim, args.classes, seed=1),
                *clustered_features(args.num_test, args.dim, args.classes, seed=2),
            )
            source = "random clustered"
        shape = f"{len(data[0])} x {len(data[2])} x {data[0].shape[1]}"
        knn_seconds, knn_top1 = time_knn(*data, ks=(20, 200))
        row = [
            source,
            str(torch.get_num_threads()),
            shape,
            f"{knn_seconds:.2f}",
            f"{100 * knn_top1[200]:.2f}",
        ]
        if args.skip_linear:
            row += ["-", "-", "-"]
        else:
            linear_seconds, linear_top1, weight_decay = time_linear(*data)
            row += [f"{linear_seconds:.1f}", f"{100 * linear_top1:.2f}", f"{weight_decay:g}"]
        print(
            "| features | threads | train x test x dim | kNN s (k=20,200) | kNN k=200 top1 "
            "| linear s | linear top1 | wd |"
        )
        print("|---|---|---|---|---|---|---|---|")
        print("| " + " | ".join(row) + " |")
    if args.cifar:
        top1 = raw_pixel_one_nn(args.cifar.expanduser(), 512, args.num_workers)
        print(f"raw-pixel 1-NN (L2) on {args.cifar}: top-1 {100 * top1:.2f}%")


if __name__ == "__main__":
    main()
