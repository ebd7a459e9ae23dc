"""Do the label-free measures track representation quality? (issue 15, item 5)

Trains short runs that differ in learning rate, temperature, batch size, views, method and
length (including a deliberately collapsing and a nearly untrained one), then records each
run's final label-free measures (``contrastive.training.health_rules``) and its kNN top-1 on the
labelled test split. Writes one JSON line per run, the Spearman rank correlation of each
measure with kNN top-1, and a scatter plot per measure::

    python benchmarks/label_free.py --dataset digits --fresh   # 15 runs of 12 epochs
    python benchmarks/label_free.py --dataset cifar10 --fresh  # 15 runs of 2 min + kNN

On an idle 2-core CPU the digits runs take ~30-60 s each (the demo's 0.2 s/step), the
CIFAR-10 ones ~3 min each (2 min training, kNN with the 50k bank): ~15 and ~45 minutes.

Outputs: ``benchmarks/results/label_free_<dataset>.jsonl`` (rows), ``..._<dataset>.png``
(scatter) and the correlation table on stdout (paste into ``benchmarks/README.md``).
A run that stops with an error (a non-finite loss) is recorded with its error, without
measures, and left out of the correlations.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from contrastive.demo import clear_run_dir, demo_config
from contrastive.embeddings import embed_folder
from contrastive.errors import ContrastiveError
from contrastive.evaluation.knn import knn_classify
from contrastive.evaluation.run_health import read_run_health
from contrastive.losses import LossConfig
from contrastive.methods.config import MethodConfig
from contrastive.recipes import cpu_budget_recipe
from contrastive.training.config import TrainConfig
from contrastive.training.health_rules import MEASURES
from contrastive.training.train import train

RESULTS = Path(__file__).parent / "results"


def variants(base: TrainConfig, length: dict[str, Any]) -> dict[str, TrainConfig]:
    """The runs: one or two changes each from ``base``; ``length`` holds the run length
    fields (``epochs`` or ``time_budget``) of a normal run."""
    views = base.views
    optim = base.optim
    temperature = base.loss.temperature or 0.5

    def run(**changes: Any) -> TrainConfig:
        return base.with_overrides(**{**length, **changes})

    short = {
        key: max(1, value // 2) if isinstance(value, int) else value
        for key, value in length.items()
    }
    if "time_budget" in length:
        short = {"time_budget": f"{_seconds(length['time_budget']) // 3}s"}
    long = {key: value * 2 if isinstance(value, int) else value for key, value in length.items()}
    if "time_budget" in length:
        long = {"time_budget": f"{_seconds(length['time_budget']) * 2}s"}
    return {
        "base": run(),
        # Deliberately poor runs: far too high a learning rate, and almost no training.
        "collapsing": run(
            optim=replace(
                optim, base_learning_rate=optim.base_learning_rate * 40, warmup_fraction=0.0
            )
        ),
        "untrained": run(max_steps=2, time_budget=None, epochs=1),
        "short": base.with_overrides(**short),
        "lr_low": run(optim=replace(optim, base_learning_rate=optim.base_learning_rate / 8)),
        "lr_high": run(optim=replace(optim, base_learning_rate=optim.base_learning_rate * 4)),
        "temperature_low": run(loss=replace(base.loss, temperature=temperature / 3)),
        "temperature_high": run(loss=replace(base.loss, temperature=min(2.0, temperature * 3))),
        "batch_small": run(batch_size=base.batch_size // 2),
        "batch_large": run(batch_size=base.batch_size * 2),
        "views_weak": run(
            views=replace(
                views,
                crop_scale=(0.8, 1.0),
                color_jitter_probability=0.0,
                grayscale_probability=0.0,
            )
        ),
        "views_no_color": run(views=replace(views, color_jitter_probability=0.0)),
        "moco": run(method=MethodConfig("moco"), loss=LossConfig("ntxent")),
        "distance_loss": run(loss=LossConfig("distance", temperature=temperature)),
        "long": base.with_overrides(**long),
    }


def _seconds(text: str) -> int:
    from contrastive.training.budget import parse_duration

    return int(parse_duration(text))


def dataset_setup(
    name: str, length: int | None = None
) -> tuple[TrainConfig, dict[str, Any], Path, Path, int]:
    """Base config, normal run length (``length``: epochs on digits, seconds on CIFAR-10),
    labelled train/test folders and kNN k."""
    if name == "digits":
        from contrastive.data.demo import ensure_demo_digits

        root = ensure_demo_digits()
        base = demo_config(data=root / "train").with_overrides(
            precision="32-true",
            health_every_n_steps=33,
            health_max_share=1.0,
            checkpoint_every_n_epochs=100,
        )
        return base, {"epochs": length or 12}, root / "train", root / "test", 20
    if name == "cifar10":
        from contrastive.data.cifar10 import ensure_cifar10

        root = ensure_cifar10()
        base = cpu_budget_recipe(data=str(root / "train")).with_overrides(
            health_every_n_steps=200, health_max_share=1.0, checkpoint_every_n_epochs=100
        )
        return base, {"time_budget": f"{length or 120}s"}, root / "train", root / "test", 200
    raise ContrastiveError(f"unknown --dataset {name!r}: digits or cifar10")


def run_one(name: str, config: TrainConfig, train_dir: Path, test_dir: Path, k: int) -> dict:
    """Trains one variant and returns its row."""
    row: dict[str, Any] = {"run": name, "out": config.out}
    clear_run_dir(config.out)
    started = time.perf_counter()
    try:
        result = train(config)
    except ContrastiveError as error:
        row.update(error=str(error), train_seconds=time.perf_counter() - started)
        return row
    row["train_seconds"] = round(time.perf_counter() - started, 1)
    row["knn_top1"] = knn_accuracy(result.backbone, result.config, train_dir, test_dir, k)
    health = read_run_health(config.out)
    row["steps"] = int(health.history[-1]["step"])
    row.update({measure: health.final(measure) for measure in MEASURES})
    return row


def knn_accuracy(
    backbone: torch.nn.Module, config: TrainConfig, train_dir: Path, test_dir: Path, k: int
) -> float:
    """Weighted kNN top-1 (cosine, T=0.1): bank ``train_dir``, queries ``test_dir``."""
    extractor = {"trained": backbone}
    bank = embed_folder(train_dir, config.views, extractor, progress=False)["trained"]
    queries = embed_folder(test_dir, config.views, extractor, progress=False)["trained"]
    ranking = knn_classify(
        torch.from_numpy(bank.embeddings),
        torch.from_numpy(bank.labels),
        torch.from_numpy(queries.embeddings),
        k=min(k, len(bank)),
        temperature=0.1,
    )
    return float((ranking[:, 0] == torch.from_numpy(queries.labels)).float().mean())


def correlations(rows: list[dict]) -> dict[str, float]:
    """Spearman rho of each measure's final value with kNN top-1, as measured: a measure
    that improves downward (uniformity, alignment) tracks accuracy when its rho is negative."""
    good = [row for row in rows if "knn_top1" in row]
    result = {}
    for measure in MEASURES:
        pairs = [(row[measure], row["knn_top1"]) for row in good if math.isfinite(row[measure])]
        if len(pairs) >= 3:
            values, accuracy = zip(*pairs)
            result[measure] = float(spearmanr(values, accuracy).statistic)
    return result


def scatter(rows: list[dict], rho: dict[str, float], dataset: str) -> Figure:
    """kNN top-1 against each measure, one panel per measure."""
    good = [row for row in rows if "knn_top1" in row]
    figure = Figure(figsize=(13, 7), layout="constrained")
    for axes, measure in zip(figure.subplots(2, 3).flatten(), MEASURES):
        points = [(row[measure], row["knn_top1"], row["run"]) for row in good]
        for value, accuracy, name in points:
            if math.isfinite(value):
                axes.scatter(value, 100 * accuracy, color="tab:blue")
                axes.annotate(name, (value, 100 * accuracy), fontsize=6, alpha=0.7)
        axes.set(
            xlabel=f"{measure} ({MEASURES[measure].description})",
            ylabel="kNN top-1 (%)",
            title=f"Spearman rho {rho.get(measure, math.nan):+.2f}",
        )
    figure.suptitle(f"label-free measures vs kNN top-1 ({dataset}, {len(good)} runs)")
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "cifar10"), default="digits")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/label_free"))
    parser.add_argument("--only", nargs="+", help="train only these variants")
    parser.add_argument(
        "--length",
        type=int,
        help="a normal run's length: epochs on digits (default 12), seconds on cifar10 (120)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="start a new rows file instead of appending"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    base, length, train_dir, test_dir, k = dataset_setup(args.dataset, args.length)
    chosen = variants(base, length)
    unknown = set(args.only or ()) - set(chosen)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}; have {', '.join(chosen)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows_file = RESULTS / f"label_free_{args.dataset}.jsonl"
    if args.fresh:
        rows_file.unlink(missing_ok=True)
    for name, config in chosen.items():
        if args.only and name not in args.only:
            continue
        config = config.with_overrides(out=str(args.runs_dir / args.dataset / name))
        row = run_one(name, config, train_dir, test_dir, k)
        row.update(dataset=args.dataset, machine=platform.processor() or platform.machine())
        print(json.dumps(row), flush=True)
        with open(rows_file, "a", encoding="utf-8") as file:
            file.write(json.dumps(row) + "\n")
    # Every row of the file: runs of earlier invocations (--only) count too.
    rows = [json.loads(line) for line in rows_file.read_text(encoding="utf-8").splitlines()]
    rho = correlations(rows)
    print(f"\nSpearman rho with kNN top-1 ({args.dataset}, {len(rows)} runs):")
    for measure, value in sorted(rho.items(), key=lambda item: -abs(item[1])):
        print(f"  {measure:<16} {value:+.3f}")
    from PIL import Image

    from contrastive.files import save_figure

    figure = save_figure(
        # Low resolution: these two plots are kept in git for benchmarks/README.md.
        scatter(rows, rho, args.dataset),
        RESULTS / f"label_free_{args.dataset}.png",
        dpi=60,
    )
    # A 64-colour palette keeps each plot ~23 KB in git (80 KB as full-colour PNG).
    with Image.open(figure) as image:
        palette = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    palette.save(figure, optimize=True)
    print(f"rows: {rows_file}\nscatter: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
