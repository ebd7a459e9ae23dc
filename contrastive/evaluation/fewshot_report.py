"""Few-label evaluation of several feature sets side by side, with a leak check and a plot.

:func:`few_label_comparison` scores labeled train/test :class:`~contrastive.embeddings.
Embeddings` of any number of encoders with :func:`~contrastive.evaluation.fewshot.
few_label_evaluation` (the same draws for all), after counting the test images that have a
pixel-space near-copy (:mod:`contrastive.data.near_copies`) among the training images.
:func:`fewshot_table` and :func:`plot_fewshot` present the result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from contrastive.data.folder import ImageFolder
from contrastive.data.near_copies import (
    confirm_by_detail,
    image_fingerprints,
    near_copy_pairs,
)
from contrastive.data.near_copy_settings import DEFAULT_THRESHOLD
from contrastive.embeddings import Embeddings
from contrastive.errors import ContrastiveError
from contrastive.evaluation.fewshot import FewShotResult, few_label_evaluation
from contrastive.evaluation.labels import labeled_alike, labeled_pair
from contrastive.evaluation.metrics import Gain, paired_gain
from contrastive.evaluation.report import ROW_NAMES, format_table
from contrastive.evaluation.settings import ALL, DEFAULT_COUNTS, DEFAULT_DRAWS, Count

#: The test subset without near-copies of training images.
CLEAN = "without_near_copies"


@dataclass
class LeakCheck:
    """Test images with a pixel-space near-copy among the training images.

    Attributes:
        threshold: Fingerprint cosine similarity used.
        leaked: ``{test path: [(training path, similarity), ...]}``.
        test_count: Test images checked.
        searched: What the test images were compared with (labeled train, unlabeled folder).
    """

    threshold: float
    leaked: dict[str, list[tuple[str, float]]]
    test_count: int
    searched: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "threshold": self.threshold,
            "searched": self.searched,
            "test_images": self.test_count,
            "test_images_with_near_copy": len(self.leaked),
            "near_copies": {
                test: [{"train": path, "similarity": round(sim, 4)} for path, sim in matches]
                for test, matches in self.leaked.items()
            },
        }


@dataclass
class FewShotComparison:
    """Few-label results of several feature sets on one split.

    Attributes:
        results: ``{name: FewShotResult}``, encoders first, then baselines.
        leak_check: The near-copy check, when run.
        classes: Class names.
    """

    results: dict[str, FewShotResult]
    leak_check: LeakCheck | None
    classes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``gains`` are the first feature set's over each other one."""
        gains = gains_over_others(self.results)
        return {
            "classes": self.classes,
            "leak_check": None if self.leak_check is None else self.leak_check.to_dict(),
            "results": {name: result.to_dict() for name, result in self.results.items()},
            "gains": {
                other: {
                    protocol: {str(count): gain.to_dict() for count, gain in per_count.items()}
                    for protocol, per_count in per_protocol.items()
                }
                for other, per_protocol in gains.items()
            },
        }

    def table(self, subset: str = ALL) -> str:
        """Markdown table; see :func:`fewshot_table`."""
        return fewshot_table(self.results, subset)


def leak_check(
    test: Embeddings,
    train: Embeddings,
    unlabeled: str | os.PathLike | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    progress: bool = False,
    train_without_labels: Embeddings | None = None,
) -> LeakCheck:
    """Finds test images with a near-copy among the labeled training images (and a folder).

    Args:
        test: Test embeddings (their ``data_root`` and ``paths`` name the images).
        train: Labeled training embeddings.
        unlabeled: Optional folder of unlabeled training images (searched recursively).
        train_without_labels: The training set's own images without a label (a mostly
            unlabeled folder): the encoder trained on them, so they are searched too.
        threshold: Fingerprint cosine similarity from which images count as near-copies.
        progress: Show progress bars.

    Raises:
        ContrastiveError: If the embeddings record no existing image folder.
    """
    test_paths = _image_paths(test, "test")
    references = {"labeled train": _image_paths(train, "train")}
    if train_without_labels is not None and len(train_without_labels):
        references["train without labels"] = _image_paths(train_without_labels, "train")
    if unlabeled is not None:
        references["unlabeled train"] = [str(p) for p in ImageFolder.scan(unlabeled).paths]
    queries = image_fingerprints(test_paths, progress=progress)
    leaked: dict[str, list[tuple[str, float]]] = {}
    for paths in references.values():
        pairs = near_copy_pairs(queries, image_fingerprints(paths, progress=progress), threshold)
        pairs = confirm_by_detail(pairs, test_paths, paths)
        for query, reference, similarity in zip(
            pairs.query.tolist(), pairs.reference.tolist(), pairs.similarity.tolist()
        ):
            leaked.setdefault(test_paths[query], []).append((paths[reference], similarity))
    ordered = {path: leaked[path] for path in test_paths if path in leaked}
    return LeakCheck(threshold, ordered, len(test_paths), list(references))


def few_label_comparison(
    sets: Mapping[str, tuple[Embeddings, Embeddings]],
    counts: Sequence[Count] = DEFAULT_COUNTS,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    k: int = 200,
    temperature: float = 0.1,
    check_leaks: bool = True,
    unlabeled: str | os.PathLike | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    progress: bool = False,
) -> FewShotComparison:
    """Few-label kNN and linear-probe accuracy of several feature sets, the same draws for all.

    Args:
        sets: ``{name: (labeled train, labeled test)}``; every train set must hold the same
            images in the same order (the draws are drawn once from their labels).
        counts: Labels per class (``"all"`` for every image).
        draws: Random labeled subsets per count.
        seed: Seed of the draws.
        k: kNN neighbours (capped at the labeled images).
        temperature: kNN vote temperature.
        check_leaks: Count test images with a near-copy among the training images and also
            score the test set without them.
        unlabeled: Unlabeled training folder also searched for near-copies.
        threshold: Near-copy threshold.
        progress: Show progress bars.

    Raises:
        ContrastiveError: If the sets hold different images, or a pair cannot be evaluated.
    """
    first_train, first_test = _same_images(sets)
    without_labels = first_train.subset(np.flatnonzero(first_train.labels < 0))
    # Unlabeled images are left out of every set alike (one warning), before the leak check
    # numbers the test images.
    trains = labeled_alike({name: pair[0] for name, pair in sets.items()}, "train")
    tests = labeled_alike({name: pair[1] for name, pair in sets.items()}, "test")
    sets = {name: (trains[name], tests[name]) for name in sets}
    first_train, first_test = next(iter(sets.values()))
    check = (
        leak_check(first_test, first_train, unlabeled, threshold, progress, without_labels)
        if check_leaks
        else None
    )
    subsets = None if check is None else _clean_subset(check, first_test)
    results = {}
    classes: list[str] = []
    for name, (train, test) in sets.items():
        pair = labeled_pair(train, test, "train", "test")
        classes = pair.classes
        results[name] = few_label_evaluation(
            pair.train_features,
            pair.train_labels,
            pair.test_features,
            pair.test_labels,
            counts,
            draws,
            seed,
            k=k,
            temperature=temperature,
            num_classes=len(pair.classes),
            test_subsets=subsets,
        )
        # The counts the first set kept (larger ones are dropped with a warning): the same
        # labels follow, and each set repeated the warning.
        counts = results[name].counts
    return FewShotComparison(results, check, classes)


def _same_images(
    sets: Mapping[str, tuple[Embeddings, Embeddings]],
) -> tuple[Embeddings, Embeddings]:
    """The first ``(train, test)`` pair, once every set is known to embed the same images.

    Raises:
        ContrastiveError: If there are no sets, or one embeds other images than the first.
    """
    if not sets:
        raise ContrastiveError("no feature sets to evaluate")
    first_train, first_test = next(iter(sets.values()))
    for name, (train, test) in sets.items():
        if not (
            np.array_equal(train.paths, first_train.paths)
            and np.array_equal(test.paths, first_test.paths)
        ):
            raise ContrastiveError(
                f"feature set {name!r} embeds other images than the first; every encoder must "
                "embed the same train and test folders"
            )
    return first_train, first_test


def _clean_subset(check: LeakCheck, test: Embeddings) -> dict[str, Tensor] | None:
    """``{CLEAN: mask}`` of the test images without a near-copy; None when none leaked."""
    leaked = set(check.leaked)
    mask = torch.tensor([path not in leaked for path in _image_paths(test, "test")])
    return None if bool(mask.all()) else {CLEAN: mask}


def fewshot_table(results: Mapping[str, FewShotResult], subset: str = ALL) -> str:
    """Top-1 (%) as ``mean [low, high]`` per feature set, protocol and count.

    Args:
        results: ``{name: FewShotResult}``.
        subset: ``"all"`` (the whole test set) or ``"without_near_copies"``.
    """
    first = next(iter(results.values()))
    counts = first.counts
    header = ["features", "protocol", *(f"{c}/class" if c != ALL else "all" for c in counts)]
    rows = []
    for name, result in results.items():
        for protocol, per_count in result.scores.get(subset, {}).items():
            cells = []
            for count in counts:
                score = per_count[count]
                if score.low == score.high:
                    cells.append(f"{100 * score.mean:.1f}")
                else:
                    cells.append(
                        f"{100 * score.mean:.1f} [{100 * score.low:.1f}, {100 * score.high:.1f}]"
                    )
            rows.append([ROW_NAMES.get(name, name), protocol, *cells])
    return format_table(header, rows)


def gains_over_others(
    results: Mapping[str, FewShotResult], subset: str = ALL
) -> dict[str, dict[str, dict[Count, Gain]]]:
    """The first feature set's paired top-1 gain over each other one (see :func:`paired_gain`).

    Returns:
        ``{other name: {protocol: {count: Gain}}}``; empty with one feature set.
    """
    names = list(results)
    if len(names) < 2:
        return {}
    first = results[names[0]].scores.get(subset, {})
    gains: dict[str, dict[str, dict[Count, Gain]]] = {}
    for name in names[1:]:
        other = results[name].scores.get(subset, {})
        gains[name] = {
            protocol: {
                count: paired_gain(score.hits, other[protocol][count].hits)
                for count, score in per_count.items()
            }
            for protocol, per_count in first.items()
            if protocol in other
        }
    return gains


def gain_table(results: Mapping[str, FewShotResult], subset: str = ALL) -> str:
    """The first feature set's gain over each other one, in top-1 points with its interval."""
    names = list(results)
    counts = results[names[0]].counts
    header = ["gain of", "over", "protocol", *(f"{c}/class" if c != ALL else "all" for c in counts)]
    first = ROW_NAMES.get(names[0], names[0])
    rows = []
    for name, per_protocol in gains_over_others(results, subset).items():
        for protocol, per_count in per_protocol.items():
            cells = [
                f"{100 * gain.mean:+.1f} [{100 * gain.low:+.1f}, {100 * gain.high:+.1f}]"
                for gain in (per_count[count] for count in counts)
            ]
            rows.append([first, ROW_NAMES.get(name, name), protocol, *cells])
    return format_table(header, rows)


def plot_fewshot(
    results: Mapping[str, FewShotResult], subset: str = ALL, title: str | None = None
) -> Figure:
    """Top-1 vs labels per class (log x), one line per feature set with its 95% band.

    One panel per protocol. ``all`` is drawn at the largest class size's position (its
    tick says ``all``).
    """
    first = next(iter(results.values()))
    protocols = list(first.scores[subset])
    numeric = [c for c in first.counts if c != ALL]
    all_at = max(numeric) * 4 if numeric else 1
    positions = [all_at if c == ALL else c for c in first.counts]
    figure = Figure(figsize=(5.2 * len(protocols), 4.0), layout="constrained")
    axes = figure.subplots(1, len(protocols), sharey=True, squeeze=False)[0]
    for axis, protocol in zip(axes, protocols):
        for name, result in results.items():
            scores = [result.scores[subset][protocol][c] for c in result.counts]
            mean = [100 * s.mean for s in scores]
            (line,) = axis.plot(positions, mean, marker="o", label=ROW_NAMES.get(name, name))
            axis.fill_between(
                positions,
                [100 * s.low for s in scores],
                [100 * s.high for s in scores],
                color=line.get_color(),
                alpha=0.2,
            )
        axis.set_xscale("log")
        axis.set_xticks(positions, [str(c) for c in first.counts])
        axis.minorticks_off()
        axis.set_xlabel("labeled images per class")
        axis.set_title(f"{'kNN' if protocol == 'knn' else 'linear probe'}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test top-1 (%)")
    axes[-1].legend(loc="lower right", fontsize="small")
    suffix = "" if subset == ALL else " (test images without near-copies)"
    figure.suptitle((title or f"{first.draws} draws, mean and 95% interval") + suffix)
    return figure


def _image_paths(embeddings: Embeddings, name: str) -> list[str]:
    root = embeddings.data_root
    if root is None or not root.is_dir():
        raise ContrastiveError(
            f"leak check: the {name} embeddings record no existing image folder "
            f"({embeddings.data_root!r}); give the folder, or --no-leak-check"
        )
    return [str(root / path) for path in embeddings.paths]
