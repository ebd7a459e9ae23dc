"""The report folder of ``contrastive curate``: a CSV per list and a contact sheet per list.

Files (each list only when it was computed):

* ``summary.json`` and ``summary.md``: counts, settings and timings.
* ``duplicates.csv`` / ``duplicates.png``: groups of exact and near copies in the folder.
* ``leaks.csv`` / ``leaks.png``: groups with images of both folders (``--against``); every
  image with a copy in the other folder is in one, some in two.
* ``outliers.csv`` / ``outliers.png``: every image, most outlying first.
* ``unusual_groups.csv`` / ``unusual_groups.png``: tiny isolated clusters.
* ``label_issues.csv`` / ``label_issues.png``: suspected label mistakes with the suggested class.
* ``selection.csv`` / ``selection.png``: the images to label first, in order; with
  ``link_selected`` also ``selected/``, a folder of links to them.
* ``blank.csv`` / ``blank.png``: blank images (one colour), least varied first.
* ``left_out.csv``: images of the folder that have no embeddings (files that cannot be
  decoded are skipped when embedding), so none of the lists above looked at them.

A contact sheet is a PNG grid of thumbnails captioned with their scores, for a person to
scan in seconds; it shows the top of its list (:data:`SHEET_IMAGES` images).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contrastive.curation.duplicates import DuplicateGroup
from contrastive.curation.pipeline import Curation
from contrastive.errors import ContrastiveError
from contrastive.explore.images import grid_figure, load_thumbnail, show_image
from contrastive.files import save_figure, write_text_atomic

#: The lists a report may hold, each as ``<name>.csv`` and ``<name>.png``.
REPORT_LISTS = (
    "duplicates",
    "leaks",
    "outliers",
    "unusual_groups",
    "label_issues",
    "selection",
    "blank",
    "left_out",
)
#: The folder of links to the selected images.
SELECTED_FOLDER = "selected"

#: Images on a flat contact sheet, and columns of every sheet.
SHEET_IMAGES = 48
SHEET_COLUMNS = 8
#: Groups (rows) on a group contact sheet.
SHEET_GROUPS = 12
THUMBNAIL = 64


def write_report(
    curation: Curation, out: str | os.PathLike, link_selected: bool = False, sheets: bool = True
) -> dict[str, object]:
    """Writes the report folder (see the module docstring).

    Args:
        curation: The findings of :func:`~contrastive.curation.pipeline.curate`.
        out: The report folder (created). Files of an earlier report are replaced: the
            report's own files (the names listed in the module docstring) that this report
            does not write are removed, so no list of an earlier run is mistaken for this
            one's; other files in the folder are left alone.
        link_selected: Also write ``selected/``, links to the selected images.
        sheets: Draw the PNG contact sheets (the CSVs are always written).

    Returns:
        The summary written to ``summary.json``.

    Raises:
        ContrastiveError: If ``out`` is a file, links are asked for without a selection, or
            ``out/selected/`` holds files other than links of an earlier report.
    """
    folder = Path(out).expanduser()
    # Worded as the parameters: the CLI checks --out and --link-selected itself first.
    if folder.exists() and not folder.is_dir():
        raise ContrastiveError(f"out={str(folder)!r} is a file, not a folder")
    if link_selected and curation.selection is None:
        raise ContrastiveError("link_selected=True needs a selection (CurationSettings(select=N))")
    if link_selected:
        # Before anything is written, so that a refusal leaves the earlier report whole.
        check_selected_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_earlier_report(folder)
    rows_written = {
        "duplicates": _write_groups(curation, curation.duplicates, folder / "duplicates", sheets),
        "outliers": _write_outliers(curation, folder / "outliers", sheets),
        "unusual_groups": _write_unusual(curation, folder / "unusual_groups", sheets),
    }
    if curation.against:
        rows_written["leaks"] = _write_groups(curation, curation.leaks, folder / "leaks", sheets)
    if curation.label_issues is not None:
        rows_written["label_issues"] = _write_label_issues(
            curation, folder / "label_issues", sheets
        )
    if curation.selection is not None:
        rows_written["selection"] = _write_selection(curation, folder / "selection", sheets)
        if link_selected:
            link_images(
                [curation.path(int(i)) for i in curation.selection.indices],
                folder / SELECTED_FOLDER,
            )
    if len(curation.blank):
        rows_written["blank"] = _write_blank(curation, folder / "blank", sheets)
    if curation.left_out:
        rows_written["left_out"] = _write_csv(
            folder / "left_out.csv", ["path"], [[path] for path in curation.left_out]
        )
    summary = _summary(curation)
    write_text_atomic(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(folder / "summary.md", summary_text(summary))
    return summary


def _remove_earlier_report(folder: Path) -> None:
    """Removes the report files an earlier report left in ``folder`` (and nothing else).

    A list is written only when computed, and a contact sheet only when it has images, so
    without this a list of an earlier run would sit beside this run's summary as if it
    were this run's.
    """
    for name in REPORT_LISTS:
        for suffix in (".csv", ".png"):
            (folder / f"{name}{suffix}").unlink(missing_ok=True)
    _remove_links(folder / SELECTED_FOLDER)


def check_selected_folder(out: str | os.PathLike) -> None:
    """Refuses a report folder whose ``selected/`` holds anything but earlier links.

    ``link_selected`` replaces ``selected/``; a folder of that name with other files in it
    is a person's, not an earlier report's, and is never deleted. Call this before the
    (long) curation so that a refusal costs nothing.

    Args:
        out: The report folder (need not exist).

    Raises:
        ContrastiveError: If ``out/selected`` is a file, or a folder holding anything but
            ``NNNN_<name>`` entries of :func:`link_images`.
    """
    selected = Path(out).expanduser() / SELECTED_FOLDER
    if selected.is_symlink() or not selected.exists():
        return
    if not selected.is_dir():
        raise ContrastiveError(f"{selected} is a file; move it to write the selected links")
    if not _only_links(selected):
        raise ContrastiveError(
            f"{selected} holds files that are not selection links; move them (or choose "
            "another --out) to write the selected links"
        )


def _only_links(folder: Path) -> bool:
    return all(_is_selected_link(entry) for entry in folder.iterdir())


def _remove_links(folder: Path) -> None:
    """Removes a ``selected/`` of an earlier report: a link to a folder, or a folder of
    nothing but :func:`link_images` entries; a folder with other files is left alone."""
    if folder.is_symlink():  # a link is removed, never what it points to
        folder.unlink()
    elif folder.is_dir() and _only_links(folder):
        shutil.rmtree(folder)


#: The longest file name most file systems take, in bytes (NAME_MAX).
NAME_MAX_BYTES = 255


def _link_name(prefix: str, name: str) -> str:
    """``prefix + name``, its stem shortened to fit :data:`NAME_MAX_BYTES`.

    The rank prefix alone keeps the names apart; a name that already took most of the 255
    bytes (about 84 CJK characters) would otherwise fail halfway through a report.
    """
    stem, suffix = os.path.splitext(name)
    # Whole characters are cut (never half of a UTF-8 sequence), from the end of the stem.
    while stem and len(os.fsencode(prefix + stem + suffix)) > NAME_MAX_BYTES:
        stem = stem[:-1]
    return prefix + stem + suffix


def _is_selected_link(entry: Path) -> bool:
    """Whether ``entry`` is one :func:`link_images` writes: ``0001_<name>``, link or copy."""
    rank, _, name = entry.name.partition("_")
    return bool(name) and rank.isdigit() and (entry.is_symlink() or entry.is_file())


def link_images(paths: Sequence[Path], folder: Path) -> None:
    """A folder of links ``0001_<name>`` to ``paths`` in order (copies where links fail).

    An earlier ``folder`` of links is replaced.

    Raises:
        ContrastiveError: If ``folder`` holds anything but links of an earlier call (a
            person's files are never deleted).
    """
    folder = Path(folder)
    _remove_links(folder)
    if folder.exists():
        raise ContrastiveError(
            f"{folder} holds files that are not selection links; move them to write the links"
        )
    folder.mkdir(parents=True)
    width = max(4, len(str(len(paths))))
    for rank, path in enumerate(paths, start=1):
        target = folder / _link_name(f"{rank:0{width}d}_", Path(path).name)
        try:
            target.symlink_to(Path(path).resolve())
        except OSError:  # file systems without symbolic links (some Windows set-ups)
            shutil.copy2(path, target)


def summary_text(summary: dict[str, object]) -> str:
    """The summary as a few lines of Markdown."""
    counts = summary["counts"]
    lines = [f"# Curation of {summary['folder']} ({summary['images']} images)", ""]
    lines.append(
        f"- duplicate groups: {counts['duplicate_groups']} "
        f"({counts['duplicate_images']} images, {counts['exact_copies']} exact copies)"
    )
    if counts.get("duplicate_groups_with_mixed_labels"):
        lines.append(
            f"- duplicate groups whose images are filed under different classes (the same "
            f"picture with two labels: one of them is wrong): "
            f"{counts['duplicate_groups_with_mixed_labels']}, see the label column of "
            "duplicates.csv"
        )
    if "leak_groups" in counts:
        lines.append(
            f"- groups shared with {summary['against']}: {counts['leak_groups']} "
            f"({counts['leaked_images']} of this folder's images, "
            f"{counts['leaked_other_images']} of {summary['against']}'s)"
        )
    lines.append(f"- unusual groups (tiny isolated clusters): {counts['unusual_groups']}")
    if counts.get("blank_images"):
        lines.append(
            f"- blank images (one colour, nothing to learn from): {counts['blank_images']}, "
            "listed in blank.csv"
        )
    lines.append("- outliers: every image ranked in outliers.csv, most outlying first")
    if "label_issues" in counts:
        lines.append(
            f"- suspected label mistakes: {counts['label_issues']} of "
            f"{counts['labeled_images']} labeled images (the out-of-fold probe behind them "
            f"agrees with {summary['label_probe_accuracy']:.1%} of the labels; the lower "
            "that is, the more of these flags are the probe's own mistakes)"
        )
        lines += _weak_probe_warning(summary)
    elif summary.get("label_issues_skipped"):
        lines.append(f"- label mistakes: not looked for ({summary['label_issues_skipped']})")
    if "selected" in counts:
        beside = ""
        if counts.get("already_labelled"):
            beside = f", beside the {counts['already_labelled']} already labelled"
            if counts.get("already_labelled_in_folder"):
                beside += (
                    f"; {counts['already_labelled_in_folder']} images of this folder are "
                    "labelled ones or copies of them, and were not picked"
                )
        lines.append(
            f"- selected to label first ({summary['settings']['select_method']}): "
            f"{counts['selected']} images{beside}"
        )
    if counts.get("left_out"):
        lines.append(
            f"- left out: {counts['left_out']} image(s) of the folder without embeddings "
            "(files that cannot be decoded are skipped), listed in left_out.csv"
        )
    seconds = ", ".join(f"{step} {value:.1f} s" for step, value in summary["seconds"].items())
    lines += ["", f"Time: {seconds}."]
    return "\n".join(lines) + "\n"


#: Share of what naming the largest class leaves unexplained that the label probe must
#: get right to be trusted: half-way from that guess to every label (75% for two balanced
#: classes; 92.75% where one class holds 85.5% of the images).
WEAK_PROBE_GAIN = 0.5


def _weak_probe_warning(summary: dict[str, object]) -> list[str]:
    """A loud line where the label-mistake flags cannot be trusted (empty otherwise).

    On 40 flower photos (8 per class) embedded by a 2-minute run the probe agreed with
    17.5% of the labels, below the 20% of chance, and flagged 30 of the 40 correct labels.
    On 468 grayscale images of 400/60/8 it agreed with 88.5%, beside 85.5% for naming the
    largest class, and flagged 14 of the 60 images of the second class.
    """
    agreement = summary.get("label_probe_accuracy")
    largest = summary.get("label_largest_class_share")
    if agreement is None or largest is None:
        return []
    if agreement <= largest:
        reason = (
            f"the probe agrees with {agreement:.1%} of the labels, no more than always "
            f"naming the largest class ({largest:.1%}) would"
        )
    elif agreement < largest + WEAK_PROBE_GAIN * (1 - largest) - 1e-9:
        reason = (
            f"the probe agrees with only {agreement:.1%} of the labels, little more than "
            f"always naming the largest class ({largest:.1%}) would"
        )
    else:
        return []
    return [
        f"- **warning: {reason}, so most of these flags are its own mistakes, not the "
        "labels'**; train longer, or label more images per class, before acting on them"
    ]


def _summary(curation: Curation) -> dict[str, object]:
    dataset = curation.dataset
    duplicate_images = sum(len(g) for g in curation.duplicates)
    counts: dict[str, int] = {
        "duplicate_groups": len(curation.duplicates),
        "duplicate_images": duplicate_images,
        # Images beyond the first of each set of identical files.
        "exact_copies": sum(_exact_extras(g) for g in curation.duplicates),
        "unusual_groups": len(curation.unusual),
        "blank_images": len(curation.blank),
        "left_out": len(curation.left_out),
    }
    if (dataset.labels >= 0).any():
        # The same picture under two classes: a label mistake that needs no probe to find.
        counts["duplicate_groups_with_mixed_labels"] = sum(
            len({int(label) for label in dataset.labels[group.members] if label >= 0}) > 1
            for group in curation.duplicates
        )
    if curation.against:
        counts["leak_groups"] = len(curation.leaks)
        # Unique images: one with copies in two leak groups is listed in both.
        members = {int(member) for group in curation.leaks for member in group.members}
        counts["leaked_images"] = sum(member < len(dataset) for member in members)
        counts["leaked_other_images"] = len(members) - counts["leaked_images"]
    probe_accuracy = largest_share = None
    if curation.label_issues is not None:
        counts["label_issues"] = len(curation.label_issues.issues)
        labeled = dataset.labels >= 0
        counts["labeled_images"] = int(labeled.sum())
        # How far to trust the list: flags of a probe that is often wrong are often its own.
        suggested = curation.label_issues.suggested[labeled]
        probe_accuracy = float((suggested == dataset.labels[labeled]).mean())
        largest_share = float(np.bincount(dataset.labels[labeled]).max() / labeled.sum())
    if curation.selection is not None:
        counts["selected"] = len(curation.selection)
        counts["already_labelled"] = curation.selection.labelled
        counts["already_labelled_in_folder"] = curation.selection.labelled_in_folder
    settings = curation.settings
    return {
        "folder": str(dataset.data_root or ""),
        "against": str(curation.against_root) if curation.against_root else None,
        "images": len(dataset),
        "embeddings": {"source": dataset.source, "feature": dataset.feature},
        "settings": {
            "near_copy_threshold": settings.near_copy_threshold,
            "outlier_k": settings.outlier_k,
            "select": settings.select,
            "select_method": settings.select_method,
            "label_issues": settings.label_issues,
            "folds": settings.folds,
            "seed": settings.seed,
            "exact_search": settings.exact_search,
        },
        "counts": counts,
        "label_probe_accuracy": probe_accuracy,
        "label_largest_class_share": largest_share,
        "label_issues_skipped": curation.label_issues_skipped,
        "seconds": curation.seconds,
    }


def _exact_extras(group: DuplicateGroup) -> int:
    """Members that repeat the bytes of an earlier member (0 for a group of near copies)."""
    return int(group.exact.sum()) - (1 if group.exact.any() else 0)


def _relative(curation: Curation, index: int) -> str:
    count = len(curation.dataset)
    return str(curation.dataset.paths[index]) if index < count else str(curation.path(index))


def _label(curation: Curation, index: int) -> str:
    return curation.dataset.label_name(index) if index < len(curation.dataset) else ""


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> int:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())
    return len(rows)


def _write_groups(
    curation: Curation, groups: Sequence[DuplicateGroup], stem: Path, sheets: bool
) -> int:
    count = len(curation.dataset)
    rows = []
    for number, group in enumerate(groups, start=1):
        for member, similarity, exact in zip(group.members, group.similarity, group.exact):
            member = int(member)
            rows.append(
                [
                    number,
                    len(group),
                    "data" if member < count else "against",
                    _relative(curation, member),
                    _label(curation, member),
                    f"{similarity:.4f}",
                    int(exact),
                ]
            )
    header = ["group", "size", "folder", "path", "label", "similarity_to_first", "exact_copy"]
    written = _write_csv(stem.with_suffix(".csv"), header, rows)
    if sheets and groups:
        sheet = [
            [
                (
                    curation.path(int(member)),
                    f"g{number} {'=' if exact else f'{similarity:.3f}'}"
                    + ("\nother" if int(member) >= count else f"\n{_label(curation, int(member))}"),
                )
                for member, similarity, exact in list(
                    zip(group.members, group.similarity, group.exact)
                )[:SHEET_COLUMNS]
            ]
            for number, group in enumerate(groups[:SHEET_GROUPS], start=1)
        ]
        _contact_sheet(sheet, stem.with_suffix(".png"))
    return written


def _write_outliers(curation: Curation, stem: Path, sheets: bool) -> int:
    order = curation.outlier_order
    rows = [
        [
            rank,
            _relative(curation, int(index)),
            _label(curation, int(index)),
            f"{curation.outlier_scores[index]:.4f}",
            _relative(curation, int(curation.nearest[index])),
        ]
        for rank, index in enumerate(order, start=1)
    ]
    header = ["rank", "path", "label", "neighbourhood_similarity", "nearest"]
    written = _write_csv(stem.with_suffix(".csv"), header, rows)
    if sheets:
        shown = order[:SHEET_IMAGES]
        _flat_sheet(
            curation,
            shown,
            [f"#{r} {curation.outlier_scores[i]:.3f}" for r, i in enumerate(shown, start=1)],
            stem.with_suffix(".png"),
        )
    return written


def _write_blank(curation: Curation, stem: Path, sheets: bool) -> int:
    rows = [
        [_relative(curation, int(index)), _label(curation, int(index))] for index in curation.blank
    ]
    written = _write_csv(stem.with_suffix(".csv"), ["path", "label"], rows)
    if sheets:
        shown = curation.blank[:SHEET_IMAGES]
        _flat_sheet(curation, shown, ["blank"] * len(shown), stem.with_suffix(".png"))
    return written


def _write_unusual(curation: Curation, stem: Path, sheets: bool) -> int:
    rows = [
        [
            number,
            len(group.members),
            f"{group.isolation:.4f}",
            _relative(curation, int(m)),
            _label(curation, int(m)),
        ]
        for number, group in enumerate(curation.unusual, start=1)
        for m in group.members
    ]
    header = ["group", "size", "similarity_to_nearest_cluster", "path", "label"]
    written = _write_csv(stem.with_suffix(".csv"), header, rows)
    if sheets and curation.unusual:
        sheet = [
            [
                (
                    curation.path(int(m)),
                    f"u{number} sim {group.isolation:.2f}\n{_label(curation, int(m))}",
                )
                for m in group.members[:SHEET_COLUMNS]
            ]
            for number, group in enumerate(curation.unusual[:SHEET_GROUPS], start=1)
        ]
        _contact_sheet(sheet, stem.with_suffix(".png"))
    return written


def _write_label_issues(curation: Curation, stem: Path, sheets: bool) -> int:
    issues = curation.label_issues
    classes = curation.dataset.classes
    rows = [
        [
            rank,
            _relative(curation, int(index)),
            _label(curation, int(index)),
            classes[issues.suggested[index]],
            f"{issues.quality[index]:.4f}",
            f"{issues.probabilities[index, issues.suggested[index]]:.4f}",
        ]
        for rank, index in enumerate(issues.issues, start=1)
    ]
    header = ["rank", "path", "given", "suggested", "given_probability", "suggested_probability"]
    written = _write_csv(stem.with_suffix(".csv"), header, rows)
    if sheets and len(issues.issues):
        shown = issues.issues[:SHEET_IMAGES]
        captions = [
            f"{_label(curation, int(i))}->{classes[issues.suggested[i]]}\np={issues.quality[i]:.2f}"
            for i in shown
        ]
        _flat_sheet(curation, shown, captions, stem.with_suffix(".png"), with_label=False)
    return written


def _write_selection(curation: Curation, stem: Path, sheets: bool) -> int:
    selection = curation.selection
    clusters = selection.clusters if len(selection.clusters) else np.full(len(selection), -1)
    sizes = selection.cluster_sizes if len(selection.cluster_sizes) else np.zeros(len(selection))
    rows = [
        [
            rank,
            _relative(curation, int(index)),
            _label(curation, int(index)),
            int(cluster),
            int(size),
            f"{score:.4f}",
            f"{radius:.4f}",
        ]
        for rank, (index, cluster, size, score, radius) in enumerate(
            zip(selection.indices, clusters, sizes, selection.scores, selection.radii), start=1
        )
    ]
    score_name = "typicality" if selection.method == "typiclust" else "distance_when_picked"
    header = ["rank", "path", "label", "cluster", "cluster_size", score_name, "covering_radius"]
    written = _write_csv(stem.with_suffix(".csv"), header, rows)
    if sheets:
        shown = selection.indices[:SHEET_IMAGES]
        captions = [
            f"#{rank} n={int(sizes[rank - 1])}"
            if selection.method == "typiclust"
            else f"#{rank} d={selection.scores[rank - 1]:.2f}"
            for rank in range(1, len(shown) + 1)
        ]
        _flat_sheet(curation, shown, captions, stem.with_suffix(".png"))
    return written


def _flat_sheet(
    curation: Curation,
    indices: np.ndarray,
    captions: Sequence[str],
    path: Path,
    with_label: bool = True,
) -> None:
    """A contact sheet of a ranked list, :data:`SHEET_COLUMNS` images per row."""
    cells = [
        (
            curation.path(int(index)),
            f"{caption}\n{_label(curation, int(index))}" if with_label else caption,
        )
        for index, caption in zip(indices, captions)
    ]
    rows = [cells[start : start + SHEET_COLUMNS] for start in range(0, len(cells), SHEET_COLUMNS)]
    if rows:
        _contact_sheet(rows, path)


def _contact_sheet(rows: Sequence[Sequence[tuple[Path, str]]], path: Path) -> None:
    """Draws rows of ``(image file, caption)`` cells and saves the PNG."""
    figure, axes = grid_figure(len(rows), max(len(row) for row in rows), title_lines=3)
    for row_number, row in enumerate(rows):
        for column, (image, caption) in enumerate(row):
            try:
                thumbnail = load_thumbnail(image, THUMBNAIL)
            except ContrastiveError:  # a file gone since it was read: leave the cell empty
                continue
            show_image(axes[row_number, column], thumbnail, caption)
    save_figure(figure, path)
