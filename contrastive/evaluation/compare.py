"""Several encoders and their baselines side by side: kNN and linear-probe accuracy.

The protocols are those of ``contrastive eval knn`` and ``contrastive eval linear`` (cosine
weighted kNN; logistic regression on cached features with the weight decay chosen on a
validation split), run on the same labelled train/test folders for every encoder::

    comparison = compare_encoders({"ntxent": "runs/a", "euclidean": "runs/b"},
                                  "data/train", "data/test")
    print(comparison.table())
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contrastive.embeddings import Embeddings
from contrastive.encoder import Encoder, load_encoder
from contrastive.errors import ContrastiveError
from contrastive.evaluation.inputs import EmbedSettings, evaluation_inputs
from contrastive.evaluation.knn import knn_rankings
from contrastive.evaluation.labels import labeled_pair
from contrastive.evaluation.linear import linear_probe
from contrastive.evaluation.metrics import topk_accuracy
from contrastive.evaluation.report import ROW_NAMES, format_table, percent, top_k_metrics
from contrastive.evaluation.settings import (
    DEFAULT_WEIGHT_DECAYS,
    MODEL,
    RANDOM_INIT,
    RAW_PIXELS,
)

#: The numbers :func:`score_embeddings` returns for each feature set.
SCORES = ("knn_top1", "knn_top5", "linear_top1", "linear_top5")

EncoderSource = str | os.PathLike | Encoder

#: Row names of the baselines, which encoders may not take.
_BASELINE_ROWS = (ROW_NAMES[RANDOM_INIT], ROW_NAMES[RAW_PIXELS])


@dataclass
class Comparison:
    """Scores of several feature sets on one train/test split.

    Attributes:
        scores: ``{name: {"knn_top1", "knn_top5", "linear_top1", "linear_top5" (fractions),
            "weight_decay" (the probe's chosen wd)}}``, encoders first, then baselines.
        baselines: The names in ``scores`` that are baselines (random init, raw pixels).
        k: Neighbours of the kNN vote.
        train: The labelled training folder (kNN bank, probe training set).
        test: The labelled test folder.
        num_classes: Classes of the training folder; with 5 or fewer, top-5 is 100% by
            construction and :meth:`table` leaves it out (``None``: unknown, shown).
    """

    scores: dict[str, dict[str, float]]
    baselines: list[str]
    k: int
    train: str
    test: str
    num_classes: int | None = None

    def table(self) -> str:
        """A Markdown table of top-1 (and top-5 above 5 classes) accuracy (%) per feature set."""
        shown = ("top1", "top5") if self.num_classes is None else top_k_metrics(self.num_classes)
        columns = {
            "knn_top1": f"kNN top-1 (k={self.k})",
            "knn_top5": "kNN top-5",
            "linear_top1": "linear top-1",
            "linear_top5": "linear top-5",
        }
        keys = [key for key in SCORES if key.rsplit("_", 1)[1] in shown]
        rows = [
            [name, *(percent(numbers[key]) for key in keys)]
            for name, numbers in self.scores.items()
        ]
        return format_table(["features", *(columns[key] for key in keys)], rows)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :func:`contrastive.evaluation.report.write_report`)."""
        return {
            "k": self.k,
            "train": self.train,
            "test": self.test,
            "num_classes": self.num_classes,
            "baselines": list(self.baselines),
            "scores": {name: dict(numbers) for name, numbers in self.scores.items()},
        }


def score_embeddings(
    train: Embeddings,
    test: Embeddings,
    k: int = 20,
    temperature: float = 0.1,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, float]:
    """kNN and linear-probe top-1/top-5 of one train/test pair of labelled embeddings.

    Args:
        train: Labelled training embeddings (kNN bank, probe training set).
        test: Labelled test embeddings.
        k: Neighbours of the weighted kNN vote (capped at the training set size).
        temperature: kNN vote temperature.
        weight_decays: Probe weight-decay candidates, chosen on a validation split.
        validation_fraction: Share of each training class held out to choose it.
        seed: Seed of the validation split.

    Returns:
        ``{"knn_top1", "knn_top5", "linear_top1", "linear_top5", "weight_decay"}``.

    Raises:
        ContrastiveError: If the pair cannot be evaluated (unlabelled images, widths or
            classes that do not match).
    """
    pair = labeled_pair(train, test, "train", "test")
    num_classes = len(pair.classes)
    k = min(k, len(pair.train_labels))
    rankings = knn_rankings(
        pair.train_features, pair.train_labels, pair.test_features, (k,), temperature, num_classes
    )
    knn = topk_accuracy(rankings[k], pair.test_labels, (1, 5))
    probe = linear_probe(
        pair.train_features,
        pair.train_labels,
        pair.test_features,
        pair.test_labels,
        num_classes,
        weight_decays,
        validation_fraction,
        seed,
    )
    return {
        "knn_top1": knn[1],
        "knn_top5": knn[5],
        "linear_top1": probe.summary["top1"],
        "linear_top5": probe.summary["top5"],
        "weight_decay": probe.weight_decay,
    }


def compare_encoders(
    encoders: Mapping[str, EncoderSource] | Sequence[EncoderSource] | EncoderSource,
    train: str | os.PathLike,
    test: str | os.PathLike,
    baselines: bool = True,
    k: int = 20,
    temperature: float = 0.1,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    validation_fraction: float = 0.1,
    seed: int = 0,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> Comparison:
    """Embeds labelled train/test folders with each encoder and scores kNN and linear probe.

    Baselines are those of ``contrastive eval --baselines``, built from the first encoder:
    its architecture at random initialisation (seed ``seed``) and the raw pixels of its
    evaluation transform. They are embedded in the same pass over the images as it.

    Args:
        encoders: ``{name: run folder, checkpoint or Encoder}``, or one or a list of run
            folders (named after the folder).
        train: Labelled training folder (kNN bank, probe training set).
        test: Labelled test folder.
        baselines: Add the ``random init`` and ``raw pixels`` rows.
        k: Neighbours of the weighted kNN vote.
        temperature: kNN vote temperature.
        weight_decays: Probe weight-decay candidates.
        validation_fraction: Share of each training class held out to choose it.
        seed: Seed of the random-init baseline and of the validation split.
        batch_size: Images per batch when embedding.
        num_workers: DataLoader worker processes.
        device: Where to embed.
        progress: Show progress bars.

    Returns:
        The scores, one row per encoder, then the baselines.

    Raises:
        ContrastiveError: If no encoder is given, two have the same name, or a folder
            cannot be evaluated.
    """
    named = _named(encoders, reserved=_BASELINE_ROWS if baselines else ())
    settings = EmbedSettings(
        batch_size=batch_size, num_workers=num_workers, device=device, progress=progress, seed=seed
    )
    scores: dict[str, dict[str, float]] = {}
    num_classes = None
    for row, (train_set, test_set) in _feature_sets(named, train, test, baselines, settings):
        scores[row] = score_embeddings(
            train_set, test_set, k, temperature, weight_decays, validation_fraction, seed
        )
        num_classes = len(train_set.classes)
    return _encoders_first(scores, named, k, str(train), str(test), num_classes)


def _encoders_first(
    scores: Mapping[str, dict[str, float]],
    named: Mapping[str, EncoderSource],
    k: int,
    train: str,
    test: str,
    num_classes: int | None,
) -> Comparison:
    """The comparison with the encoders' rows first, then the baselines' rows.

    The baselines are embedded with the first encoder, so they arrive between encoders.
    """
    baseline_rows = [row for row in scores if row not in named]
    return Comparison(
        scores={row: scores[row] for row in [*named, *baseline_rows]},
        baselines=baseline_rows,
        k=k,
        train=train,
        test=test,
        num_classes=num_classes,
    )


def _feature_sets(
    named: Mapping[str, EncoderSource],
    train: str | os.PathLike,
    test: str | os.PathLike,
    baselines: bool,
    settings: EmbedSettings,
) -> Iterator[tuple[str, tuple[Embeddings, Embeddings]]]:
    """``(row name, (train, test) embeddings)`` of each encoder, and of the baselines.

    The baselines are built from the first encoder and embedded in the same pass as it.
    """
    for index, (name, source) in enumerate(named.items()):
        encoder = source if isinstance(source, Encoder) else load_encoder(source)
        sets = evaluation_inputs(train, test, encoder, baselines and index == 0, settings)
        for key, pair in sets.items():
            yield (name if key == MODEL else ROW_NAMES.get(key, key)), pair


def _named(
    encoders: Mapping[str, EncoderSource] | Sequence[EncoderSource],
    reserved: Collection[str] = (),
) -> dict[str, EncoderSource]:
    """``{row name: source}``; names must be unique and none of ``reserved``."""
    if isinstance(encoders, str | os.PathLike | Encoder):
        encoders = [encoders]
    if isinstance(encoders, Mapping):
        named = {str(name): source for name, source in encoders.items()}
        count = len(encoders)
    else:
        pairs = [(_default_name(source), source) for source in encoders]
        named, count = dict(pairs), len(pairs)
    if not named:
        raise ContrastiveError("no encoders given to compare")
    if len(named) != count:
        raise ContrastiveError(
            "two encoders have the same name; pass {name: run} to name them apart"
        )
    clash = sorted(set(named) & set(reserved))
    if clash:
        raise ContrastiveError(
            f"encoder name(s) {', '.join(clash)} are taken by the baselines; choose other names"
        )
    return named


def _default_name(source: EncoderSource) -> str:
    if isinstance(source, Encoder):
        return Path(source.source).name or source.source
    return Path(source).name
