"""``contrastive demo``: train on the built-in digits and compare with two baselines."""

from __future__ import annotations

import argparse
import os

from contrastive.cli.commands import COMMANDS
from contrastive.errors import ContrastiveError

HELP = COMMANDS["demo"].help
#: Overrides the demo's default number of epochs (the tests use a shorter run).
EPOCHS_VARIABLE = "CONTRASTIVE_DEMO_EPOCHS"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from contrastive.demo import DEMO_EPOCHS

    parser = subparsers.add_parser("demo", help=HELP, description=HELP)
    parser.add_argument("--out", help="run directory (default: a new folder in the cache)")
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"training epochs (default: ${EPOCHS_VARIABLE}, else {DEMO_EPOCHS})",
    )
    parser.add_argument("--time-budget", help="train for a wall-clock budget instead, e.g. 5m")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.set_defaults(func=run)


def epochs_from_environment() -> int | None:
    """``$CONTRASTIVE_DEMO_EPOCHS`` as a positive int, or None when unset.

    Raises:
        ContrastiveError: If the variable is set but not a positive integer.
    """
    value = os.environ.get(EPOCHS_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ContrastiveError(f"{EPOCHS_VARIABLE} must be a positive integer, got {value!r}")
    return int(value)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from contrastive.demo import demo_config, run_demo

    config = demo_config(out=args.out)
    epochs = args.epochs if args.epochs is not None else epochs_from_environment()
    if epochs is not None:
        config = replace(config, epochs=epochs, checkpoint_every_n_epochs=epochs)
    if args.time_budget is not None:
        config = replace(config, time_budget=args.time_budget)
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    print(f"demo: training on {config.data}")
    print(run_demo(config).table())
    return 0
