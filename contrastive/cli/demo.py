"""``contrastive demo``: train on the built-in digits and compare with random init."""

from __future__ import annotations

import argparse

HELP = "train on the built-in digits data set and print kNN accuracy vs random init"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help=HELP, description=HELP)
    parser.add_argument("--out", help="run directory (default: a new folder in the cache)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 25)")
    parser.add_argument("--time-budget", help="train for a wall-clock budget instead, e.g. 5m")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from contrastive.demo import demo_config, run_demo

    config = demo_config(out=args.out)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.time_budget is not None:
        config = replace(config, time_budget=args.time_budget)
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    print(f"demo: training on {config.data}")
    print(run_demo(config).table())
    return 0
