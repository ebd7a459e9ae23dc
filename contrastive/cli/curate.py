"""``contrastive curate``: duplicates, outliers, label mistakes and what to label first.

Embeds ``--data`` with a run (or reads embeddings of it), runs
:func:`contrastive.curation.curate` and writes the report folder of
:mod:`contrastive.curation.report` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contrastive.cli.arguments import add_labels_argument, output_folder
from contrastive.cli.commands import COMMANDS
from contrastive.cli.embed import (
    add_compute_arguments,
    add_encoder_arguments,
    embed_with_args,
    encoder_from_args,
    labelled_with_args,
    show_progress,
)
from contrastive.curation.settings import LABEL_ISSUE_MODES, SELECTION_METHODS, CurationSettings
from contrastive.data.label_table import is_table_header
from contrastive.data.near_copy_settings import DEFAULT_THRESHOLD
from contrastive.errors import ContrastiveError
from contrastive.files import refuse_output_inside, same_path

if TYPE_CHECKING:
    # The embeddings and the analyses import torch: loaded by the functions that curate, so
    # that `contrastive curate --help` and a mistyped flag are answered at once.
    from contrastive.embeddings import Embeddings
    from contrastive.encoder import Encoder

#: The embeddings ``curate`` computed with ``--run``, kept in the report folder.
EMBEDDINGS_FILE = "embeddings.npz"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``curate``."""
    parser = subparsers.add_parser(
        "curate",
        help=COMMANDS["curate"].help,
        description="Curate an image folder with its own embeddings: groups of exact and "
        "near copies (also shared with --against, e.g. train/test leakage), outliers and "
        "tiny isolated clusters, suspected label mistakes (class sub-folders; cleanlab on "
        "out-of-fold probe probabilities) and, with --select N, the N images to label "
        "first. Writes CSV files and PNG contact sheets to --out, and the embeddings it made "
        "with --run (OUT/embeddings.npz, for --embeddings next time).",
    )
    add_encoder_arguments(parser, required=False)
    parser.add_argument(
        "--embeddings",
        type=Path,
        metavar="FILE",
        help="embeddings of --data written by `contrastive embed` (instead of --run)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="image folder to curate (with --embeddings: by default the folder they record)",
    )
    parser.add_argument("--out", required=True, type=output_folder, help="report folder to write")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="OTHER",
        help="another image folder searched for copies of --data's images (leakage)",
    )
    parser.add_argument("--select", type=int, metavar="N", help="pick N images to label first")
    parser.add_argument(
        "--select-method",
        choices=SELECTION_METHODS,
        default="typiclust",
        help="typiclust: the most typical image of each of N k-means clusters (default); "
        "kcenter: k-center greedy, each pick the farthest from the earlier ones",
    )
    add_labels_argument(parser, "; its labelled images are what --select complements")
    parser.add_argument(
        "--labelled",
        type=Path,
        metavar="PATH",
        help="images already labelled, which --select complements: a folder of them "
        "(embedded with --run), their embeddings (.npz from `contrastive embed` with the "
        "same run), or a text file naming images of --data, one path per line",
    )
    parser.add_argument(
        "--link-selected",
        action="store_true",
        help="also write OUT/selected/, a folder of links to the selected images",
    )
    parser.add_argument(
        "--label-issues",
        choices=LABEL_ISSUE_MODES,
        default="auto",
        help="look for label mistakes: auto (when --data has class sub-folders), yes, no",
    )
    parser.add_argument(
        "--near-copy-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"fingerprint cosine similarity from which images are near copies "
        f"(default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--exact-search",
        action="store_true",
        help="compare every image with every other in the copy and outlier searches at any "
        "size (above 100,000 images they are approximate otherwise; exact takes 5-11 "
        "minutes per search at 255,000 images on 2 CPU cores, hours at a million)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of k-means and the folds")
    parser.add_argument("--no-sheets", action="store_true", help="write CSV files only")
    add_compute_arguments(parser)
    parser.set_defaults(func=run)


def _recorded_folder(embeddings: Path | None) -> Path:
    """The image folder an embeddings file records, standing in for a missing ``--data``."""
    from contrastive.embeddings import recorded_data_root

    if embeddings is None:
        raise ContrastiveError("--data is required: the image folder to curate")
    recorded = recorded_data_root(embeddings)
    if recorded is None or not recorded.is_dir():
        raise ContrastiveError(
            f"give --data: {embeddings} records no existing image folder ({str(recorded or '')!r})"
        )
    print(f"curating {recorded} (the folder {embeddings} was embedded from)")
    return recorded


def embeddings_from_args(
    args: argparse.Namespace,
) -> tuple[Embeddings, list[str] | None, Encoder | None]:
    """Embeds ``--data`` with ``--run``/``--checkpoint``, or reads ``--embeddings``.

    Returns:
        ``(embeddings, the folder's images without embeddings, the encoder)``; the second
        is None where the folder was not compared with the embeddings (embedded here), the
        third where embeddings were read.

    Raises:
        ContrastiveError: If no source or two are given, or the embeddings are of another
            folder.
    """
    from contrastive.curation.pipeline import check_matches_folder
    from contrastive.embeddings import load_embeddings

    if not args.data.is_dir():
        raise ContrastiveError(f"--data {args.data} is not a folder")
    source = args.run or args.checkpoint
    if source is None and args.embeddings is None:
        raise ContrastiveError("curate needs --run RUN (or --checkpoint, or --embeddings FILE)")
    if source is not None and args.embeddings is not None:
        raise ContrastiveError("give either --run/--checkpoint or --embeddings, not both")
    if args.embeddings is not None:
        dataset = load_embeddings(args.embeddings)
        recorded = dataset.data_root
        if recorded is not None and not same_path(recorded, args.data):
            # Same relative names can hold other images (numbered files in two splits):
            # the user should know the features were not made from this folder's path.
            warnings.warn(
                f"{args.embeddings} was embedded from {recorded}, not --data {args.data}; "
                f"using it for {args.data}'s images of the same names",
                stacklevel=2,
            )
        dataset = dataclasses.replace(dataset, data_root=str(args.data))
        return dataset, check_matches_folder(dataset, args.data), None
    encoder = encoder_from_args(args)
    return embed_with_args(args, encoder), None, encoder


def labelled_embeddings(
    args: argparse.Namespace, dataset: Embeddings, encoder: Encoder | None
) -> np.ndarray | None:
    """``(L, D)`` embeddings of the images ``--labelled`` names (None without the flag).

    Raises:
        ContrastiveError: If the path is missing, a folder comes without an encoder to embed
            it, or a list names images that are not in ``--data``.
    """
    from contrastive.embeddings import load_embeddings
    from contrastive.encoder import same_weights_source

    path = args.labelled
    if path is None:
        return None
    if not path.exists():
        raise ContrastiveError(f"--labelled {path} does not exist")
    if path.is_dir():
        if encoder is None:
            raise ContrastiveError(
                f"--labelled {path} is a folder: it is embedded with the encoder, so give "
                "--run (or pass its embeddings: contrastive embed --run RUN --data "
                f"{path} --out labelled.npz, then --labelled labelled.npz)"
            )
        embedded = embed_with_args(args, encoder, folder=path)
        print(f"embedded {len(embedded)} labelled images of {path}")
        return embedded.embeddings
    if path.suffix == ".npz":
        given = load_embeddings(path)
        if (
            given.source
            and dataset.source
            and not same_weights_source(given.source, dataset.source)
        ):
            warnings.warn(
                f"--labelled {path} was embedded with {given.source}, --data with "
                f"{dataset.source}: the selection assumes one encoder",
                stacklevel=2,
            )
        return given.embeddings
    return dataset.embeddings[listed_rows(path, dataset)]


def listed_rows(path: Path, dataset: Embeddings) -> np.ndarray:
    """Rows of ``dataset`` for the images a text file names, one per line (relative to the
    folder, or absolute inside it; blank lines and ``#`` comments skipped; a CSV line gives
    its first field, and a ``path`` header is skipped).

    Raises:
        ContrastiveError: If the file is not text, names no image, or names an image that is
            not in the folder.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ContrastiveError(
            f"--labelled {path}: not a readable text file of image paths ({error})"
        ) from None
    root = Path(dataset.data_root) if dataset.data_root is not None else None
    rows_by_path = {Path(name).as_posix(): row for row, name in enumerate(dataset.paths)}
    rows, unknown = [], []

    def row_of(name: str) -> int | None:
        candidate = Path(name)
        if candidate.is_absolute() and root is not None and candidate.is_relative_to(root):
            candidate = candidate.relative_to(root)
        return rows_by_path.get(candidate.as_posix())

    for line in lines:
        whole = line.strip()
        name = whole.split(",")[0].strip().strip('"')
        if not name or name.startswith("#") or name.lower() == "path":
            continue
        # A whole line first: file names may hold commas.
        row = row_of(whole)
        if row is None:
            row = row_of(name)
        if row is None:
            unknown.append(name)
        else:
            rows.append(row)
    if unknown:
        if lines and is_table_header(lines[0]):
            raise ContrastiveError(
                f"--labelled {path} looks like a label table (its first line: {lines[0]!r}): "
                "give it as --labels FILE; its images are then what --select complements"
            )
        raise ContrastiveError(
            f"--labelled {path}: {len(unknown)} of its images are not in --data "
            f"{root} (e.g. {unknown[0]!r}); name them relative to --data, one per line"
        )
    if not rows:
        raise ContrastiveError(f"--labelled {path} names no image (one path per line)")
    return np.unique(np.asarray(rows, dtype=np.int64))


def run(args: argparse.Namespace) -> int:
    """Curates ``--data`` and writes the report to ``--out``."""
    if args.data is None:
        args.data = _recorded_folder(args.embeddings)
    if args.against is not None and not args.against.is_dir():
        raise ContrastiveError(f"--against {args.against} is not a folder")
    if args.link_selected and args.select is None:
        raise ContrastiveError("--link-selected needs --select N")
    if args.labelled is not None and args.select is None:
        raise ContrastiveError("--labelled needs --select N (it says what the picks complement)")
    if args.out.exists() and not args.out.is_dir():
        raise ContrastiveError(f"--out {args.out} is a file, not a folder")
    # The report's contact sheets and selected/ links would be curated as data next time.
    refuse_output_inside(args.out, args.data, "--out", "--data")
    # Imported when curating: the report draws with matplotlib, which other commands skip.
    from contrastive.curation.pipeline import curate
    from contrastive.curation.report import check_selected_folder, summary_text, write_report
    from contrastive.embeddings import save_embeddings

    if args.link_selected:
        check_selected_folder(args.out)  # before the curation, so a refusal costs nothing
    settings = CurationSettings(
        near_copy_threshold=args.near_copy_threshold,
        select=args.select,
        select_method=args.select_method,
        label_issues=args.label_issues,
        seed=args.seed,
        exact_search=args.exact_search,
    )
    dataset, left_out, encoder = embeddings_from_args(args)
    dataset = labelled_with_args(args, dataset, str(args.data))
    if args.embeddings is None:
        # Embedding is the longest step on a large folder: keep it before the curation, so
        # that an interrupted run, or a rerun with other settings, need not embed again.
        args.out.mkdir(parents=True, exist_ok=True)
        saved = args.out / EMBEDDINGS_FILE
        save_embeddings(dataset, saved)
        print(f"embeddings saved to {saved} (to curate again: --embeddings {saved})")
    labelled = labelled_embeddings(args, dataset, encoder)
    partly = dataset.is_labeled and bool((dataset.labels < 0).any())
    if labelled is None and partly and args.select is not None:
        # A label table's images (given now, or recorded in --embeddings) are labelled
        # already: picking them again would waste the labelling.
        labelled = dataset.embeddings[dataset.labels >= 0]
        print(f"--select complements the {len(labelled):,} labelled images")
    curation = curate(
        dataset,
        settings,
        args.against,
        show_progress(args),
        left_out,
        labelled=labelled,
        announce_steps=not args.no_progress,
    )
    summary = write_report(curation, args.out, args.link_selected, sheets=not args.no_sheets)
    print(summary_text(summary), end="")
    sheets = "" if args.no_sheets else ", PNG contact sheets"
    print(f"report: {args.out} (summary.md, CSV files{sheets})")
    return 0
