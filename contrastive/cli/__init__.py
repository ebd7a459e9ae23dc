"""Command-line interface: ``contrastive train | demo | embed | eval | health | export | curate``.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``, which registers
the subcommand and sets ``func`` to a ``run(args) -> int`` function; :mod:`.commands` names
each command, its help line and its module, so that a command line imports only the module
of the command it names. The CLI stays thin: it parses flags into the library's dataclass
configs and calls the library.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import re
import sys
import time
import warnings
from collections.abc import Sequence

from contrastive.cli.commands import COMMAND_MODULES, COMMANDS, command_in
from contrastive.console import ConsoleFormatter, HideLightningInfo, quiet_third_party_logs
from contrastive.errors import ContrastiveError, user_message


class OneLineErrorParser(argparse.ArgumentParser):
    """Reports usage errors as one line naming the argument, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}{_suggestion(message)} (see `{self.prog} --help`)\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but an unknown argument points to the command's own help
        (``contrastive health --help``), which lists the options it has, not the top one."""
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            command = _command_parser(self, parsed)
            command.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed


def _suggestion(message: str) -> str:
    """``; did you mean 'train'?`` where ``message`` is argparse's "invalid choice" for a
    near miss (``trian``, ``--method simclrr``), else ``""``."""
    match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if match is None:
        return ""
    choices = re.findall(r"'([^']*)'", match.group(2)) or match.group(2).split(", ")
    close = difflib.get_close_matches(match.group(1), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _command_parser(
    parser: argparse.ArgumentParser, parsed: argparse.Namespace
) -> argparse.ArgumentParser:
    """The deepest (sub)command parser that ``parsed`` chose (``contrastive eval knn``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
            if chosen is not None:
                return _command_parser(chosen, parsed)
    return parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered.

    Args:
        command: Register only this command's module in full (it imports torch), the other
            commands by name and help line: what parsing a command line that names it needs.
            ``""``: no module at all (``contrastive --help``). None: every module
            (:data:`~contrastive.cli.commands.COMMAND_MODULES`).
    """
    parser = OneLineErrorParser(
        prog="contrastive",
        description="Self-supervised contrastive learning on image folders.",
        epilog="`contrastive` alone runs the demo; `contrastive COMMAND --help` lists a "
        "command's options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command is None:
        for name in COMMAND_MODULES:
            importlib.import_module(f"contrastive.cli.{name}").add_parser(subparsers)
    else:
        wanted = COMMANDS[command].module if command else None
        for name, spec in COMMANDS.items():
            if spec.module == wanted:
                if name not in subparsers.choices:  # one module may register two commands
                    importlib.import_module(f"contrastive.cli.{wanted}").add_parser(subparsers)
            else:
                subparsers.add_parser(name, help=spec.help, description=spec.help)
    _accept_verbose_anywhere(parser)
    _show_defaults(parser)
    return parser


def _accept_verbose_anywhere(parser: argparse.ArgumentParser) -> None:
    """``contrastive eval knn -v ...`` as well as ``contrastive -v eval knn ...``; SUPPRESS
    keeps a command not given -v from undoing the one given before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.add_argument(
                    "-v",
                    "--verbose",
                    action="store_true",
                    default=argparse.SUPPRESS,
                    help="show debug logging",
                )
                _accept_verbose_anywhere(command)


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every command's help shows its options' defaults (see DefaultsHelpFormatter)."""
    from contrastive.cli.arguments import DefaultsHelpFormatter

    parser.formatter_class = DefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _show_defaults(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Bad input ends with a one-line ``error: ...`` and exit code 2."""
    # A command's --time-budget counts from here: building its parser imports torch and
    # Lightning (5-7 s on 2 cores), which is part of the time the user waits.
    started = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_in(argv) or "")
    # Before parsing: reading an argument (a label table) may warn.
    warnings.formatwarning = lambda message, category, *_a, **_k: f"warning: {message}\n"
    args = parser.parse_args(argv)
    console = logging.StreamHandler()
    console.setFormatter(ConsoleFormatter())
    if not args.verbose:
        console.addFilter(HideLightningInfo())
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[console])
    quiet_third_party_logs(verbose=args.verbose)
    if args.command is None:
        # `contrastive` alone runs the demo, the advertised first command.
        args = build_parser("demo").parse_args(["demo", *argv])
    args.started = started
    try:
        return int(args.func(args) or 0)
    except ContrastiveError as error:
        print(f"error: {user_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
