"""Any labeled folder pair: train for a budget as a new user would, score kNN top-1, log a row.

One row per call (run from the repository root, one at a time, on a quiet machine)::

    B="--name eurosat --train /work/data/eurosat/train --test /work/data/eurosat/test --budget 10m"
    python benchmarks/folders.py $B --row ours     # contrastive train --data --out --time-budget
    python benchmarks/folders.py $B --row peer32   # Lightly's example recipe at 32 px
    python benchmarks/folders.py $B --row peer64   # ... at 64 px
    python benchmarks/folders.py $B --row raw      # raw pixels at 32 px (training-free floor)
    python benchmarks/folders.py $B --row random   # random init of the backbone ours used

``--train-data DIR`` trains on another folder than the labeled bank (STL-10: the 13,000
images of ``unlabeled_all``); it defaults to ``--train``. Rows:

* ``ours``: exactly what a new user types, ``contrastive train --data DIR --out RUN
  --time-budget T`` and no other flag (``--seed N`` where ``--seed`` is not 0: a second
  seed of the same row), in a subprocess timed from start to exit; then the
  run's final ``backbone.pt`` is rebuilt from its ``config.yaml`` (``common.load_run``) and
  evaluated at the run's evaluation size and normalisation.
* ``peer32`` / ``peer64``: ``common.peer_baseline`` (Lightly's example recipe with Lightly's
  API, ImageNet-stem ResNet-18) at that input size for the same budget, evaluated at it.
* ``raw``: the pixels of the 32 px evaluation transform.
* ``random``: the backbone ``ours`` used, at random init (seed ``--seed``), read from the
  newest ``ours`` run of this ``--name`` and ``--budget`` under ``--runs`` (or
  ``--ours-run``); without one, from the configuration the CLI resolves for
  ``contrastive train --data DIR --time-budget T`` before training.

Every row: features of the whole ``--train`` folder (the bank) and ``--test`` folder through
the package's evaluation transform, kNN top-1 with k=200, T=0.1, cosine on L2-normalised
features (``common.knn_top1``). The row goes to ``benchmarks/results/folders.jsonl`` (with
the command, commit, machine and 1-min load average at the start) and
``benchmarks/results/folders.md`` is regenerated from it, with each row's error divided by
the better peer's error where both peer rows exist for the same name, budget and bank.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import (
    RESULTS,
    append_row,
    budget_seconds,
    embed_pair,
    git_commit,
    knn_top1,
    load_run,
    machine,
    peer_baseline,
)

from contrastive.backbone_config import BackboneConfig
from contrastive.backbones import build_backbone
from contrastive.data.folder import list_images
from contrastive.embeddings import RawPixels
from contrastive.errors import ContrastiveError
from contrastive.evaluation.report import format_table
from contrastive.training.config import TrainConfig, dump_config, load_config_file
from contrastive.views.config import ViewConfig

ROWS = ("ours", "peer32", "peer64", "raw", "random")
RAW_SIZE = 32


# ------------------------------------------------------------------------------ folders
def limit_per_class(source: Path, target: Path, per_class: int, seed: int = 0) -> Path:
    """Hard links (copies across file systems) at most ``per_class`` seeded-random images
    of each class folder of ``source`` into ``target``, for quick checks; reused if there."""
    if target.is_dir():
        return target
    rng = random.Random(seed)
    partial = target.with_name(target.name + ".partial")
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        files = list_images(class_dir)
        (partial / class_dir.name).mkdir(parents=True, exist_ok=True)
        for file in rng.sample(files, min(per_class, len(files))):
            destination = partial / class_dir.name / file.name
            try:
                os.link(file, destination)
            except OSError:
                destination.write_bytes(file.read_bytes())
    partial.rename(target)
    return target


def checked_folder(path: str, flag: str) -> Path:
    """``path`` as an existing folder, or a one-line error naming ``flag``."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ContrastiveError(f"{flag}: not a folder: {folder}")
    return folder


# --------------------------------------------------------------------------------- rows
def train_ours(
    train_data: Path, run: Path, budget: str, seed: int = 0
) -> tuple[TrainConfig, torch.nn.Module, dict]:
    """``contrastive train --data --out --time-budget`` and nothing else, timed end to end;
    ``--seed`` only where ``seed`` is not the CLI's own default, 0 (a second seed of a row)."""
    command = [sys.executable, "-m", "contrastive", "train", "--data", str(train_data)]
    command += ["--out", str(run), "--time-budget", budget]
    if seed != 0:
        command += ["--seed", str(seed)]
    started = time.perf_counter()
    exit_code = subprocess.run(command).returncode
    if exit_code != 0:
        raise ContrastiveError(f"{shlex.join(command)} exited with {exit_code}")
    seconds = time.perf_counter() - started
    config, backbone, stats = load_run(run)
    # The whole command, as the user waits for it, not the run files' time stamps.
    stats.update(
        train_s=round(seconds, 1),
        train_images_per_s=round(stats["images_seen"] / seconds, 1),
        evaluated_later=False,
    )
    return config, backbone, stats


def ours_config(args: argparse.Namespace, train_data: Path, runs: Path) -> tuple[TrainConfig, str]:
    """The configuration ``ours`` used (its run's config.yaml), else the CLI's own for the
    same command, and where it came from."""
    candidates = [Path(args.ours_run)] if args.ours_run else []
    candidates += sorted(
        runs.glob(f"{args.name}-{args.budget}-*"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for run in candidates:
        if (run / "config.yaml").is_file():
            return TrainConfig.from_dict(load_config_file(run / "config.yaml")), str(run)
    from contrastive.cli import build_parser
    from contrastive.cli.train import _recipe_config, config_from_args

    argv = ["train", "--data", str(train_data), "--out", "unused", "--time-budget", args.budget]
    cli_args = build_parser().parse_args(argv)
    return config_from_args(cli_args, _recipe_config(cli_args)), "CLI defaults (no ours run)"


def save_peer_run(backbone: torch.nn.Module, views: ViewConfig, run: Path) -> None:
    """The peer's weights as a run folder (``config.yaml`` + ``backbone.pt``) that every
    evaluator loads, e.g. ``eval fewshot --encoder lightly=RUN``."""
    import torchvision

    names = [name for name, _ in torchvision.models.resnet18().named_children()]
    state = {
        f"{names[int(key.split('.', 1)[0])]}.{key.split('.', 1)[1]}": value
        for key, value in backbone.state_dict().items()
    }
    run.mkdir(parents=True, exist_ok=True)
    torch.save(state, run / "backbone.pt")
    config = TrainConfig(out=str(run), backbone=BackboneConfig("resnet18"), views=views)
    (run / "config.yaml").write_text(dump_config(config))


def config_summary(config: TrainConfig) -> dict:
    """What a row needs to say about a configuration of ours (the full config goes too)."""
    stem = "small-image stem" if config.backbone.small_image_stem else "stem as named"
    return {
        "backbone": f"{config.backbone.name} ({stem})",
        "batch_size": config.batch_size,
        "config": config.to_dict(),
    }


# --------------------------------------------------------------------------- the table
COLUMNS = (
    "name",
    "budget",
    "row",
    "trained on",
    "train s",
    "steps",
    "img/s",
    "eval px",
    "bank/test",
    "kNN top-1",
    "error",
    "error / better peer",
    "commit",
    "load",
    "date",
)


def group_key(row: dict) -> tuple:
    """Rows compared with each other: same folder name, budget and evaluation sets."""
    return row.get("name"), row.get("budget"), row.get("bank_images"), row.get("test_images")


def better_peer_errors(rows: list[dict]) -> dict[tuple, float]:
    """For each group with both peer rows, the lower error of the newest peer32 and peer64."""
    newest: dict[tuple, dict[str, float]] = {}
    for row in rows:  # file order is time order: later rows replace earlier ones
        if row.get("row") in ("peer32", "peer64") and row.get("error") is not None:
            newest.setdefault(group_key(row), {})[row["row"]] = row["error"]
    return {key: min(peers.values()) for key, peers in newest.items() if len(peers) == 2}


def write_markdown(jsonl: Path, markdown: Path) -> None:
    """Regenerates the table of every row in ``jsonl``, grouped by name and budget."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    peers = better_peer_errors(rows)

    def order(row: dict) -> tuple:
        return (
            row.get("name", ""),
            budget_seconds(row.get("budget") or "1"),
            str(row.get("bank_images")),
            ROWS.index(row["row"]) if row.get("row") in ROWS else len(ROWS),
            row.get("date", ""),
        )

    def number(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
        return "-" if value is None else f"{scale * value:.{digits}f}"

    table = []
    for row in sorted(rows, key=order):
        peer_error = peers.get(group_key(row))
        ratio = (
            None if peer_error is None or row.get("error") is None else row["error"] / peer_error
        )
        table.append(
            [
                row.get("name", ""),
                str(row.get("budget", "-")),
                row.get("row", "?"),
                "-" if row.get("row") in ("raw", "random") else str(row.get("train_data_images")),
                str(row.get("train_s", "-")),
                str(row.get("steps", "-")),
                str(row.get("train_images_per_s", "-")),
                str(row.get("eval_input_size", "-")),
                f"{row.get('bank_images', '?')}/{row.get('test_images', '?')}",
                number(row.get("knn_top1"), 100),
                number(row.get("error"), 100),
                number(ratio, digits=2),
                row.get("commit", "?"),
                str(row.get("load_start", "-")),
                row.get("date", ""),
            ]
        )
    header = (
        "# Labeled folder benchmark rows\n\nGenerated by `benchmarks/folders.py` from "
        "`folders.jsonl` (one JSON object per row, with the exact command and machine). "
        "kNN: top-1, k=200, T=0.1, cosine, final weights, bank = the `--train` folder, "
        "queries = `--test`; trained on = images in `--train-data`; error = 1 - top-1 "
        "(points). `error / better peer`: the row's error divided by the lower error of the "
        "newest `peer32` and `peer64` rows of the same name, budget and bank/test (below 1: "
        "better than Lightly's example recipe). "
        "load = 1-min load average at the start (other jobs share the machine).\n\n"
    )
    markdown.write_text(header + format_table(COLUMNS, table) + "\n")


# ----------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="folder label (groups rows in the table)")
    parser.add_argument("--train", required=True, help="labeled class folders: the kNN bank")
    parser.add_argument("--test", required=True, help="labeled class folders: the queries")
    parser.add_argument(
        "--train-data", default=None, help="folder to train on (default: --train; no labels used)"
    )
    parser.add_argument("--row", required=True, choices=ROWS)
    parser.add_argument("--budget", default="10m", help="training wall-clock budget")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="ours, peer and random-init seed (ours: "
        "`contrastive train --seed N`, added to its command only where N is not 0)",
    )
    parser.add_argument(
        "--ours-run",
        default=None,
        help="ours: evaluate this finished run instead of training; random: take its backbone",
    )
    parser.add_argument(
        "--eval-subset",
        type=int,
        default=None,
        help="at most this many bank and test images per class (quick checks only)",
    )
    parser.add_argument(
        "--eval-input-size",
        type=int,
        default=None,
        help="ours/random: evaluate whole images at this side instead of the run's own "
        "(re-evaluating a finished run with --ours-run at other sizes)",
    )
    parser.add_argument("--eval-batch-size", type=int, default=512)
    parser.add_argument("--results", default=str(RESULTS / "folders.jsonl"))
    parser.add_argument(
        "--runs",
        default=str(Path(tempfile.gettempdir()) / "contrastive-folders-bench"),
        help="where ours writes its run directories",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    command = "python " + shlex.join(sys.argv if argv is None else [__file__, *argv])
    load_start = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    bank = checked_folder(args.train, "--train")
    test = checked_folder(args.test, "--test")
    train_data = checked_folder(args.train_data, "--train-data") if args.train_data else bank
    runs = Path(args.runs)
    if args.eval_subset:
        scratch = runs / f"{args.name}-eval{args.eval_subset}"
        bank = limit_per_class(bank, scratch / "train", args.eval_subset)
        test = limit_per_class(test, scratch / "test", args.eval_subset)
    row: dict = {
        "name": args.name,
        "row": args.row,
        "budget": args.budget,
        "command": command,
        "commit": git_commit(),
        "machine": machine(),
        "load_start": load_start,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "train_data": str(train_data),
        "train_data_images": len(list_images(train_data)),
        "bank": str(bank),
        "test": str(test),
    }

    if args.row == "ours":
        if args.ours_run:
            run = Path(args.ours_run)
            config, extractor, stats = load_run(run)
        else:
            run = runs / f"{args.name}-{args.budget}-{time.strftime('%Y%m%d-%H%M%S')}"
            config, extractor, stats = train_ours(train_data, run, args.budget, args.seed)
        views = config.views
        row.update(
            stats,
            run=str(run),
            epochs_seen=round(stats["images_seen"] / row["train_data_images"], 2),
        )
        row.update(config_summary(config))
    elif args.row in ("peer32", "peer64"):
        size = int(args.row.removeprefix("peer"))
        extractor, stats = peer_baseline(
            train_data, budget_seconds(args.budget), seed=args.seed, input_size=size
        )
        views = ViewConfig(input_size=size)  # ImageNet normalisation, as SimCLRTransform
        row.update(stats, backbone="resnet18 (ImageNet stem)", batch_size=256)
        # Not "NAME-BUDGET-*": that pattern finds the newest `ours` run (see ours_config).
        peer_run = runs / f"{args.row}-{args.name}-{args.budget}-{time.strftime('%Y%m%d-%H%M%S')}"
        save_peer_run(extractor, views, peer_run)
        row["run"] = str(peer_run)
        row["epochs_seen"] = round(stats["images_seen"] / row["train_data_images"], 2)
    elif args.row == "raw":
        extractor, views = RawPixels(RAW_SIZE), ViewConfig(input_size=RAW_SIZE)
        row.update(backbone="raw pixels")
    else:  # random
        config, source = ours_config(args, train_data, runs)
        torch.manual_seed(args.seed)
        extractor, _ = build_backbone(config.backbone)
        views = config.views
        row.update(config_summary(config), config_source=source)

    if args.eval_input_size and args.row in ("ours", "random"):
        views = replace(views, eval_input_size=args.eval_input_size)
        row["eval_input_size_overridden"] = True
    evaluation_started = time.perf_counter()
    pair = embed_pair(extractor.eval(), bank, test, views, args.eval_batch_size)
    row.update(
        eval_input_size=views.evaluation_size,
        bank_images=len(pair.train_labels),
        test_images=len(pair.test_labels),
        knn_top1=knn_top1(pair),
    )
    row["error"] = round(1 - row["knn_top1"], 6)
    row["eval_s"] = round(time.perf_counter() - evaluation_started, 1)
    row["total_s"] = round(time.perf_counter() - started, 1)
    append_row(row, Path(args.results), write_markdown)
    return row


if __name__ == "__main__":
    try:
        main()
    except ContrastiveError as error:
        sys.exit(f"error: {error}")
