"""No accuracy loss from the fast path: batched views + bf16 vs per-image views + fp32.

Run from the repository root::

    python benchmarks/pipeline_accuracy.py --per-class 1000 --epochs 2

Trains the same configuration (the CPU-budget recipe, fixed epochs so both runs take the
same number of steps) twice on a CIFAR-10 subset: (i) ``view_pipeline="per_image"``,
``precision="32-true"``; (ii) ``view_pipeline="batched"``, ``precision="bf16-mixed"``. Then
kNN top-1 (k=200, T=0.1) of each final backbone on the 10k CIFAR-10 test images with the
training subset as the bank. Issue 4 asks for (ii) within 1 point of (i), or better.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from contrastive.data.cifar10 import ensure_cifar10, subset
from contrastive.embeddings import embed_folder
from contrastive.evaluation.knn import knn_rankings
from contrastive.evaluation.labels import labeled_pair
from contrastive.evaluation.metrics import topk_accuracy
from contrastive.recipes import cpu_budget_recipe
from contrastive.training.train import train


def knn_top1(backbone, train_dir: Path, test_dir: Path, views) -> float:
    train_emb = embed_folder(train_dir, views, {"f": backbone}, batch_size=512, progress=False)["f"]
    test_emb = embed_folder(test_dir, views, {"f": backbone}, batch_size=512, progress=False)["f"]
    pair = labeled_pair(train_emb, test_emb)
    ranked = knn_rankings(
        pair.train_features, pair.train_labels, pair.test_features, (200,), 0.1, len(pair.classes)
    )[200]
    return topk_accuracy(ranked, pair.test_labels, (1,))[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="per-image DataLoader workers")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    root = ensure_cifar10()
    scratch = Path(args.out or tempfile.mkdtemp(prefix="pipeline-accuracy-"))
    train_dir = scratch / f"train{args.per_class}"
    if not train_dir.exists():
        subset(root / "train", train_dir, args.per_class, seed=args.seed)
    base = cpu_budget_recipe(str(train_dir), "", time_budget=None).with_overrides(
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, num_workers=args.workers
    )
    rows = []
    for name, pipeline, precision in (
        ("per_image fp32", "per_image", "32-true"),
        ("batched bf16", "batched", "bf16-mixed"),
    ):
        config = base.with_overrides(
            out=str(scratch / name.replace(" ", "_")), view_pipeline=pipeline, precision=precision
        )
        started = time.perf_counter()
        result = train(config)
        seconds = time.perf_counter() - started
        top1 = knn_top1(result.backbone.eval(), train_dir, root / "test", config.views)
        row = {
            "pipeline": name,
            "steps": int(result.module.global_step),
            "train_s": round(seconds, 1),
            "knn_top1": round(top1, 4),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(
        f"batched bf16 - per_image fp32: {100 * (rows[1]['knn_top1'] - rows[0]['knn_top1']):+.2f}"
        " points"
    )


if __name__ == "__main__":
    main()
