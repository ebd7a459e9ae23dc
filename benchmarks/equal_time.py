"""Short-run levers at equal wall-clock time: multi-crop small views, network depth (issue 12).

Both arms of a comparison train for the same number of seconds, not steps: the question
is what learns most in a short CPU budget. The loop is written out (not ``contrastive
train``) because the library has no small views: a narrow ResNet with the small-image stem
(``--backbone``, the quarter-width ResNet-18 of the CPU recipe by default), its views
(``BatchedViews``, the ``cifar`` preset at ``--large`` px, crops of 20-100%), Lightly's
``NTXentLoss`` at T=0.1 and ``SimCLRProjectionHead(features, 2048, 128)``, SGD with
momentum 0.9 and weight decay 5e-4 on weights, lr ``--lr x batch / 256`` with a 5% warm-up
and a cosine decay over the *time* budget.

Multi-crop (Caron et al., 2020, arXiv:2006.09882) adds ``--num-small`` crops of ``--small``
px (crop area ``--small-scale``) per image, each a positive of both views: more positives
per decoded image for a fraction of a view's work. The loss is then the mean of the two
views' NT-Xent and the mean NT-Xent of every (small crop, view) pair.

kNN top-1 (k=200, T=0.1) of the final backbone at 32 px, bank 1,000 training images per
class, 200 test images per class (seeded subsets)::

    python benchmarks/equal_time.py --train CIFAR10/train --test CIFAR10/test --name base
    python benchmarks/equal_time.py --train ... --test ... --name mc2 --num-small 2
    python benchmarks/equal_time.py --train ... --test ... --name r10 --backbone resnet10_quarter

Rows go to ``benchmarks/results/equal_time.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import embed_pair, git_commit, knn_top1, machine
from folders import checked_folder, limit_per_class
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.models.utils import get_weight_decay_parameters
from lightly.utils.scheduler import cosine_warmup_schedule

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.cache_root import cache_dir
from contrastive.data.cache import load_or_build_cache
from contrastive.data.folder import ImageFolder
from contrastive.views.batched import BatchedViews
from contrastive.views.config import view_preset

RESULTS = Path(__file__).parent / "results" / "equal_time.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="labeled training folder (class/img)")
    parser.add_argument("--test", required=True, help="labeled test folder (class/img)")
    parser.add_argument("--name", required=True, help="row name")
    parser.add_argument("--seconds", type=float, default=213.0, help="training seconds")
    parser.add_argument("--backbone", default="resnet18_quarter", help="a narrow ResNet")
    parser.add_argument("--large", type=int, default=24, help="side of the two views")
    parser.add_argument("--small", type=int, default=12, help="side of the small crops")
    parser.add_argument("--num-small", type=int, default=0, help="small crops per image")
    parser.add_argument("--small-scale", type=float, nargs=2, default=(0.05, 0.4))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.3, help="per 256 images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def train_for(args: argparse.Namespace, images_cache, large_views, small_views):
    """Trains for ``args.seconds``; returns the backbone, steps and images seen."""
    backbone, width = build_backbone(
        BackboneConfig(args.backbone, small_image_stem=True, stem_stride=1)
    )
    head = SimCLRProjectionHead(width, 2048, 128)
    model = torch.nn.Sequential(backbone, head).to(memory_format=torch.channels_last)
    with_decay, without_decay = get_weight_decay_parameters([backbone, head])
    peak_lr = args.lr * args.batch_size / 256
    optimizer = torch.optim.SGD(
        [{"params": with_decay}, {"params": without_decay, "weight_decay": 0.0}],
        lr=peak_lr,
        momentum=0.9,
        weight_decay=5e-4,
    )
    criterion = NTXentLoss(temperature=0.1)
    generator = torch.Generator().manual_seed(args.seed)

    def project(views: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        batch = torch.cat(views).contiguous(memory_format=torch.channels_last)
        return model(batch).chunk(len(views))

    count = len(images_cache)
    order, position, steps = torch.randperm(count, generator=generator), 0, 0
    started = time.perf_counter()
    budget_ms = int(args.seconds * 1000)
    while (elapsed := time.perf_counter() - started) < args.seconds:
        # Lightly's warm-up + cosine, over milliseconds of the budget instead of steps.
        learning_rate = cosine_warmup_schedule(
            int(elapsed * 1000), budget_ms, peak_lr, 0.0, budget_ms // 20, 0.0
        )
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        if position + args.batch_size > count:
            order, position = torch.randperm(count, generator=generator), 0
        rows = np.sort(order[position : position + args.batch_size].numpy())
        position += args.batch_size
        images = images_cache.batch(rows)
        first, second = project(large_views(images, generator))
        loss = criterion(first, second)
        if small_views is not None:
            small = project(small_views(images, generator))
            pairs = [criterion(crop, view) for crop in small for view in (first, second)]
            loss = (loss + sum(pairs) / len(pairs)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    return backbone, steps, steps * args.batch_size, time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    train_dir = checked_folder(args.train, "--train")
    test_dir = checked_folder(args.test, "--test")
    images_cache = load_or_build_cache(ImageFolder.scan(train_dir).paths, 32)
    large = view_preset("cifar", input_size=args.large, crop_scale=(0.2, 1.0), eval_input_size=32)
    small = view_preset("cifar", input_size=args.small, crop_scale=tuple(args.small_scale))
    small_views = BatchedViews(small, args.num_small) if args.num_small else None
    backbone, steps, seen, seconds = train_for(
        args, images_cache, BatchedViews(large, 2), small_views
    )
    subsets = cache_dir() / "benchmark_subsets"
    bank = limit_per_class(train_dir, subsets / f"{train_dir.name}_1000", 1000)
    queries = limit_per_class(test_dir, subsets / f"{test_dir.name}_200", 200)
    top1 = knn_top1(embed_pair(backbone.eval(), bank, queries, large))
    row = {
        "name": args.name,
        "backbone": args.backbone,
        "num_small": args.num_small,
        "small_px": args.small if args.num_small else None,
        "seconds": round(seconds, 1),
        "steps": steps,
        "passes": round(seen / len(images_cache), 2),
        "images_per_s": round(seen / seconds, 1),
        "knn_top1": round(top1, 4),
        "commit": git_commit(),
        "machine": machine(),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as file:
        file.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "machine"}))
    return row


if __name__ == "__main__":
    main()
