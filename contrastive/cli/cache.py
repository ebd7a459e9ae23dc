"""``contrastive cache list|clean``: the decoded image caches on disk, and freeing them."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from contrastive.cli.arguments import checked_float
from contrastive.cli.commands import COMMANDS
from contrastive.errors import ContrastiveError

CACHE_HELP = COMMANDS["cache"].help
#: Default age, in days, after which ``clean`` removes an unused cache.
DEFAULT_UNUSED_DAYS = 30.0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``cache list`` and ``cache clean``."""
    cache = subparsers.add_parser(
        "cache",
        help=CACHE_HELP,
        description=CACHE_HELP
        + ". Training decodes a folder once into a cache; a folder with files added or "
        "removed gets a new one and the old one stays until removed here (files edited in "
        "place: the cache is rebuilt and the old one deleted). Removing a cache loses nothing: the "
        "next run that needs it decodes the images again.",
    )
    actions = cache.add_subparsers(dest="cache_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show every cache: size, images, last use, folder")
    cleaning = actions.add_parser("clean", help="remove caches unused for a while")
    for parser in (listing, cleaning):
        parser.add_argument(
            "--cache-dir",
            type=Path,
            metavar="DIR",
            help="cache folder (default: $CONTRASTIVE_CACHE/decoded or "
            "~/.cache/contrastive/decoded, as training uses)",
        )
    cleaning.add_argument(
        "--unused-days",
        type=checked_float(_check_days, "a number of days >= 0"),
        default=DEFAULT_UNUSED_DAYS,
        metavar="DAYS",
        help="remove caches neither built nor reused for this many days",
    )
    cleaning.add_argument(
        "--all", action="store_true", help="remove every cache (a run reading one now may fail)"
    )
    cleaning.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    listing.set_defaults(func=run_list)
    cleaning.set_defaults(func=run_clean)


def run_list(args: argparse.Namespace) -> int:
    from contrastive.data.cache_files import default_cache_dir, list_caches
    from contrastive.files import disk_size

    folder = args.cache_dir or default_cache_dir()
    entries = list_caches(folder)
    if not entries:
        print(f"no decoded caches in {folder}")
        return 0
    now = time.time()
    print(f"{'last used':>10}  {'size':>9}  {'images':>9}  {'side':>5}  folder")
    for entry in entries:
        side = f"{entry.side}px" if entry.side else "?"
        images = f"{entry.images:,}" if entry.images else "?"
        print(
            f"{_age(now - entry.last_used):>10}  {disk_size(entry.bytes):>9}  {images:>9}  "
            f"{side:>5}  {entry.folder or '(not recorded)'}"
        )
    total = sum(entry.bytes for entry in entries)
    print(f"{len(entries)} caches, {disk_size(total)} in {folder}")
    return 0


def run_clean(args: argparse.Namespace) -> int:
    from contrastive.data.cache_files import (
        abandoned_builds,
        default_cache_dir,
        file_bytes,
        list_caches,
        remove_files,
    )
    from contrastive.files import disk_size

    folder = args.cache_dir or default_cache_dir()
    now = time.time()
    cutoff = now - args.unused_days * 86400
    chosen, kept = [], []
    for entry in list_caches(folder):
        (chosen if args.all or entry.last_used <= cutoff else kept).append(entry)
    killed = abandoned_builds(folder, now)
    files = [path for entry in chosen for path in entry.files] + killed
    verb = "would remove" if args.dry_run else "removed"
    size = file_bytes(files) if args.dry_run else remove_files(files)
    extra = f" and {len(killed)} file(s) of killed builds" if killed else ""
    print(f"{verb} {len(chosen)} caches{extra}: {disk_size(size)} from {folder}")
    if kept:
        why = f"used in the last {args.unused_days:g} days"
        print(
            f"kept {len(kept)} caches ({disk_size(sum(entry.bytes for entry in kept))}) {why}; "
            "--all removes them too"
        )
    return 0


def _check_days(days: float) -> None:
    if not math.isfinite(days) or days < 0:
        raise ContrastiveError(f"expected a number of days >= 0, got {days}")


def _age(seconds: float) -> str:
    """``5 min``, ``3 h``, ``12 days`` ago."""
    if seconds < 3600:
        return f"{max(0, int(seconds // 60))} min"
    if seconds < 86400 * 2:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"
