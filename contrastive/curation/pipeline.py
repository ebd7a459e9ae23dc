"""One pass of curation over an embedded folder: every list ``contrastive curate`` writes.

:func:`curate` runs the analyses of this package on a set of :class:`Embeddings` (and the
image files they point at) and returns a :class:`Curation`;
:func:`~contrastive.curation.report.write_report` writes it as CSV files and contact sheets.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contrastive import neighbours
from contrastive.curation.duplicates import (
    DuplicateGroup,
    copy_links,
    file_digests,
    groups_from_links,
    leak_groups,
)
from contrastive.curation.label_issues import LabelIssues, find_label_issues
from contrastive.curation.outliers import UnusualGroup, neighbourhood_similarity, unusual_groups
from contrastive.curation.selection import Selection, select
from contrastive.curation.settings import CurationSettings
from contrastive.curation.space import centred
from contrastive.data.folder import (
    DECODE_ERRORS,
    ImageFolder,
    list_images,
    load_rgb,
    relative_key,
)
from contrastive.data.near_copies import (
    BLANK_STD,
    detail_thumbnails,
    fingerprints_and_spreads,
)
from contrastive.embeddings import Embeddings
from contrastive.errors import ContrastiveError

log = logging.getLogger(__name__)


@dataclass
class Curation:
    """Everything found in one folder.

    Attributes:
        dataset: The embedded images.
        settings: How they were looked at.
        duplicates: Groups of exact and near copies within the folder, largest first.
        outlier_scores: ``(N,)`` mean cosine similarity of each image to its nearest
            images (centred embeddings); low is an outlier.
        nearest: ``(N,)`` each image's most similar other image.
        unusual: Tiny isolated clusters, most isolated first.
        label_issues: Suspected label mistakes (None when not run).
        selection: Images to label first (None when not asked).
        against: The other folder's image files, when one was compared.
        against_root: That folder.
        leaks: Duplicate groups holding images of both folders; member indices at or past
            ``len(dataset)`` are ``against[index - len(dataset)]``.
        seconds: Wall-clock seconds of each step.
        left_out: Images of the folder without embeddings, relative to it (embedding skips
            files that cannot be decoded), so the report can name what it did not look at.
        label_issues_skipped: Why label mistakes were not looked for (None if they were).
        blank: Indices of blank images (one colour: every channel's standard deviation
            under :data:`~contrastive.data.near_copies.BLANK_STD` levels), least varied
            first. Their embeddings can sit among the ordinary images, where the outlier
            ranking misses them: a uniform gray frame ranked 2,675th of 3,013.
    """

    dataset: Embeddings
    settings: CurationSettings
    duplicates: list[DuplicateGroup]
    outlier_scores: np.ndarray
    nearest: np.ndarray
    unusual: list[UnusualGroup]
    label_issues: LabelIssues | None = None
    selection: Selection | None = None
    against: list[Path] = field(default_factory=list)
    against_root: Path | None = None
    leaks: list[DuplicateGroup] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)
    label_issues_skipped: str | None = None
    blank: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def outlier_order(self) -> np.ndarray:
        """Image indices from the most to the least outlying (ties by index)."""
        return np.argsort(self.outlier_scores, kind="stable")

    def path(self, index: int) -> Path:
        """The file of image ``index`` (an index past the folder is in ``against``)."""
        count = len(self.dataset)
        return self.dataset.image_path(index) if index < count else self.against[index - count]


def check_matches_folder(dataset: Embeddings, folder: str | os.PathLike) -> list[str]:
    """Checks that embeddings were made from the images of ``folder``.

    Images without embeddings are allowed where they cannot be decoded (embedding skips
    them, so embedding again would not help); they are named in a warning.

    Returns:
        The folder's images without embeddings, relative and sorted (for :func:`curate`'s
        ``left_out``, so the folder is not scanned twice).

    Raises:
        ContrastiveError: If the embeddings record another folder's images, or a readable
            image of the folder has none.
    """
    images = set(ImageFolder.scan(folder).relative_paths())
    embedded = _embedded_paths(dataset)
    missing = embedded - images
    if missing:
        example = sorted(missing)[0]
        raise ContrastiveError(
            f"the embeddings are not of {folder}: {len(missing)} of their {len(embedded)} "
            f"images (e.g. {example}) are not in it; embed this folder first"
        )
    unembedded = sorted(images - embedded)
    for name in unembedded:
        try:
            load_rgb(Path(folder) / name)
        except DECODE_ERRORS:
            continue  # embedding skipped it as unreadable, and will each time
        raise ContrastiveError(
            f"the embeddings are not of {folder}: {len(unembedded)} of its {len(images)} "
            f"images (e.g. {name}) have none; embed this folder again"
        )
    if unembedded:
        warnings.warn(
            f"{len(unembedded)} unreadable image(s) of {folder} have no embeddings and are "
            f"left out (e.g. {unembedded[0]})",
            stacklevel=2,
        )
    return unembedded


def _embedded_paths(dataset: Embeddings) -> set[str]:
    """The embedded images' paths, relative and in POSIX form as a folder scan gives them."""
    return {Path(path).as_posix() for path in dataset.paths}


def images_left_out(dataset: Embeddings) -> list[str]:
    """Images of ``dataset.data_root`` that have no embeddings, sorted (relative paths).

    Empty when the folder is unknown, gone or holds no images, or the embeddings name their
    images by absolute paths: then there is nothing to compare with.
    """
    root = dataset.data_root
    if root is None or not root.is_dir() or any(Path(p).is_absolute() for p in dataset.paths):
        return []
    # Listed without ImageFolder.scan's "found N images", and without the scan's warnings
    # (files that are no images, hidden folders): embedding the folder said them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = {relative_key(path, root) for path in list_images(root)}
    return sorted(images - _embedded_paths(dataset))


def _check_curation_inputs(dataset: Embeddings, settings: CurationSettings) -> str | None:
    """Refuses what :func:`curate` cannot do, with one line naming the problem.

    Returns:
        Why label mistakes are not looked for, or None when they are.
    """
    count = len(dataset)
    if count < 3:
        raise ContrastiveError(f"curation needs at least 3 images, got {count}")
    if settings.select is not None and not 1 <= settings.select <= count:
        raise ContrastiveError(
            # Worded for both callers: --select on the command line, select= in Python.
            f"cannot select {settings.select} images to label: the folder has {count}"
            if settings.select > count
            else f"the selection must hold at least 1 image, got {settings.select}"
        )
    given = dataset.labels[dataset.labels >= 0] if dataset.is_labeled else np.zeros(0, np.int64)
    labeled = len(np.unique(given)) >= 2
    if settings.label_issues == "yes" and not labeled:
        root = dataset.data_root or "the folder"
        raise ContrastiveError(
            f"label-mistake detection needs class sub-folders with at least two classes; "
            f"{root} has {'one class' if dataset.is_labeled else 'none'}"
        )
    if settings.label_issues == "no":
        return "not asked for"
    if settings.label_issues == "yes":
        return None  # find_label_issues says why, if it cannot
    if not labeled:
        # Said in the summary: a silently missing section reads as "no mistakes found".
        return "the folder has one class" if dataset.is_labeled else "no class sub-folders"
    if np.bincount(given).max() < 2:
        log.warning("label mistakes skipped: no class has 2 labeled images to cross-validate")
        return "no class has 2 labelled images to cross-validate"
    return None


def _copies(
    dataset: Embeddings,
    against: str | os.PathLike | None,
    settings: CurationSettings,
    progress: bool,
) -> tuple[list, list, list[Path], Path | None, np.ndarray]:
    """Duplicate groups within the folder, leak groups shared with the ``against`` folder,
    and the folder's blank images, from one decode of each file.

    Returns:
        ``(duplicate groups, leak groups, the other folder's images, its root, blank image
        indices, least varied first)``.
    """
    other_folder = ImageFolder.scan(against) if against is not None else None
    other = other_folder.paths if other_folder is not None else []
    threshold = settings.near_copy_threshold
    count = len(dataset)
    every = [*(dataset.image_path(index) for index in range(count)), *other]
    fingerprints, spreads = fingerprints_and_spreads(every, progress=progress)
    spreads = spreads[:count]
    flat = np.flatnonzero(spreads < BLANK_STD)
    blank = flat[np.argsort(spreads[flat], kind="stable")]
    digests = file_digests(every, progress=progress)
    exact = settings.exact_search
    # The folder's candidate images are viewed in detail once for both searches.
    thumbnails = detail_thumbnails()
    folder_links = copy_links(
        fingerprints[:count],
        digests[:count],
        threshold,
        progress=progress,
        exact=exact,
        paths=every[:count],
        thumbnails=thumbnails,
    )
    duplicates = groups_from_links(folder_links, fingerprints[:count], digests[:count])
    leaks = (
        leak_groups(
            fingerprints,
            digests,
            count,
            folder_links,
            threshold,
            progress=progress,
            exact=exact,
            paths=every,
            thumbnails=thumbnails,
        )
        if other
        else []
    )
    return duplicates, leaks, list(other), other_folder.root if other_folder else None, blank


class _Laps:
    """Seconds spent in each named step, in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self._clock, 3)
        self._clock = now


def curate(
    dataset: Embeddings,
    settings: CurationSettings | None = None,
    against: str | os.PathLike | None = None,
    progress: bool = False,
    left_out: list[str] | None = None,
    labelled: np.ndarray | None = None,
    announce_steps: bool | None = None,
) -> Curation:
    """Duplicates, outliers, unusual groups, label mistakes and a selection for one folder.

    Args:
        dataset: Embeddings of the folder's images (their files must be readable: the
            duplicate search looks at pixels).
        settings: See :class:`CurationSettings`.
        against: Another image folder searched for copies of this one's images (leakage).
        progress: Show progress bars (reading images, the neighbour searches) and a line
            as each step starts.
        left_out: The folder's images without embeddings, where already known (from
            :func:`check_matches_folder`); None: the folder is scanned for them.
        labelled: ``(L, D)`` embeddings (the same encoder) of images already labelled, in
            the folder or elsewhere: the selection complements them
            (:func:`~contrastive.curation.selection.select`).
        announce_steps: Log a line as each step starts (default: as ``progress``); a log
            file wants the lines without the bars.

    Returns:
        The findings.

    Raises:
        ContrastiveError: If label mistakes are asked for on an unlabeled folder, the
            selection is larger than the folder, or the folder has fewer than 3 images.
    """
    settings = settings or CurationSettings()
    label_issues_skipped = _check_curation_inputs(dataset, settings)
    count = len(dataset)
    # Each step below runs for minutes on 10^5 images: say which one is running.
    say = log.info if (progress if announce_steps is None else announce_steps) else log.debug
    laps = _Laps()
    say("duplicates: exact and near copies among %d images", count)
    if count > neighbours.APPROXIMATE_ROWS and not settings.exact_search:
        log.info(
            "the copy and outlier searches are approximate above %d images "
            "(exact_search / --exact-search compares every pair: minutes to hours)",
            neighbours.APPROXIMATE_ROWS,
        )
    duplicates, leaks, other, other_root, blank = _copies(dataset, against, settings, progress)
    laps.lap("duplicates")
    say("outliers: each image's %d nearest images", settings.outlier_k)
    space = centred(dataset.embeddings)
    scores, nearest = neighbourhood_similarity(
        space, settings.outlier_k, progress=progress, exact=settings.exact_search
    )
    say("unusual groups: k-means of %d images", count)
    unusual = unusual_groups(space, seed=settings.seed)
    laps.lap("outliers")
    issues = None
    if label_issues_skipped is None:
        with_labels = int((dataset.labels >= 0).sum())
        say("label mistakes: %d-fold probe on %d labelled images", settings.folds, with_labels)
        issues = find_label_issues(
            dataset.embeddings,
            dataset.labels,
            len(dataset.classes),
            folds=settings.folds,
            seed=settings.seed,
            class_names=dataset.classes,
        )
        laps.lap("label issues")
    selection = None
    if settings.select is not None:
        say("selection: %s picks %d of %d images", settings.select_method, settings.select, count)
        # The labelled images are centred as the folder is, so both share one space.
        given = None if labelled is None else labelled - dataset.embeddings.mean(axis=0)
        selection = select(
            space, settings.select, settings.select_method, settings.seed, labelled=given
        )
        laps.lap("selection")
    return Curation(
        dataset,
        settings,
        duplicates,
        scores,
        nearest,
        unusual,
        issues,
        selection,
        other,
        other_root,
        leaks,
        laps.seconds,
        images_left_out(dataset) if left_out is None else list(left_out),
        label_issues_skipped,
        blank,
    )
