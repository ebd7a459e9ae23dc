"""The subcommands: each one's name, one-line help and the module that registers it.

Kept free of torch (and of the subcommand modules, which import it): ``contrastive --help``
and a mistyped command are answered without importing the library, and a command imports
only its own module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One subcommand.

    Attributes:
        module: Module under ``contrastive.cli`` whose ``add_parser`` registers it.
        help: The line ``contrastive --help`` shows for it.
    """

    module: str
    help: str


#: In the order ``contrastive --help`` lists them.
COMMANDS = {
    "train": Command("train", "train an encoder on a folder of images (no labels needed)"),
    "demo": Command(
        "demo",
        "train on the built-in digits and print kNN accuracy next to random init and raw pixels",
    ),
    "embed": Command("embed", "embed an image folder with a trained encoder"),
    "eval": Command("evaluate", "kNN, linear-probe or few-label evaluation"),
    "health": Command(
        "health",
        "plot a run's label-free health (rank, alignment/uniformity, stability) and print a "
        "verdict",
    ),
    "compare-runs": Command(
        "health", "rank finished runs by a label-free measure (no labels needed)"
    ),
    "export": Command(
        "export",
        "export a run's backbone to ONNX, TorchScript or a state_dict, checked on real images",
    ),
    "curate": Command(
        "curate", "find duplicates, outliers, label mistakes and what to label first"
    ),
    "cache": Command("cache", "list the decoded image caches or remove the ones no longer used"),
}

#: Every module that registers commands, in the order of :data:`COMMANDS`.
COMMAND_MODULES = tuple(dict.fromkeys(command.module for command in COMMANDS.values()))


def command_in(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not ``-v``), or None where it
    names none, or starts with another option (``--help``) or a word that is no command."""
    for word in argv:
        if word in ("-v", "--verbose"):
            continue
        return word if word in COMMANDS else None
    return None
