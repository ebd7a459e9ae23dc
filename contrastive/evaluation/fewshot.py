"""Few-label evaluation: kNN and linear-probe accuracy with N labeled images per class.

Answers "how good would a classifier be if I labeled only N images per class?" For each
count N, ``draws`` random labeled subsets are drawn (N images of every class, or all a class
has when it has fewer), each is scored with the weighted kNN of :mod:`.knn` and a linear
probe (:mod:`.linear`), and the accuracies over draws give a mean and a 95% interval.

Protocol choices, and why:

* **Draws depend on the labels and the seed only**, never on the features, so every encoder
  is scored on the same labeled images. A draw is one seeded permutation per class; count N
  takes its first N images, so the labeled sets of one draw are nested across counts.
* **Interval**: a Student-t interval over draws, ``mean +- t(0.975, draws - 1) * s / sqrt
  (draws)``. It covers the spread due to *which* images were labeled, not test-set
  sampling. ``all`` labels is one draw (every draw would be the same), so its interval is
  the point itself.
* **kNN**: Lightly's weighted vote (cosine, ``exp(sim / T)``) over the labeled images only,
  with ``k = min(k, labeled images)`` so that tiny label sets still vote.
* **Linear probe**: features are standardised with the mean and standard deviation of the
  *whole* training pool (its images are there, only their labels are missing), so that ten
  labels do not have to estimate 512 scales. With N labels per class the weight decay is
  the fixed rule ``wd = 1 / n_labeled`` (scikit-learn's default ``C = 1``: a unit Gaussian
  prior on the weights of standardised features, the same prior strength whatever the
  number of labels). Cross-validating on the labeled few is impossible at one label per
  class and very noisy at two to five, and the test set must never choose it. At ``all``
  labels the probe is :func:`~contrastive.evaluation.linear.linear_probe` itself (weight
  decay chosen on a validation split of the training images), so the ``all`` numbers are
  those of ``contrastive eval linear`` and ``contrastive eval knn``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import scipy.stats
import torch
from torch import Tensor

from contrastive.errors import ContrastiveError
from contrastive.evaluation.checks import check_feature_pair
from contrastive.evaluation.knn import knn_rankings
from contrastive.evaluation.linear import fit_logistic_regression, linear_probe, standardization
from contrastive.evaluation.settings import (
    ALL,
    DEFAULT_COUNTS,
    DEFAULT_DRAWS,
    DEFAULT_WEIGHT_DECAYS,
    Count,
    parse_counts,
)

PROTOCOLS = ("knn", "linear")
CONFIDENCE = 0.95


@dataclass
class FewShotScore:
    """Accuracy of one protocol at one labels-per-class count.

    Attributes:
        mean: Mean top-1 over draws (fraction).
        low: Lower end of the 95% interval.
        high: Upper end.
        accuracies: Top-1 of each draw.
        hits: ``(draws, M)`` bool, whether each test image was classified right in each
            draw (for :func:`~contrastive.evaluation.metrics.paired_gain`; not in JSON).
    """

    mean: float
    low: float
    high: float
    accuracies: list[float]
    hits: Tensor = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        return {"mean": self.mean, "low": self.low, "high": self.high, "draws": self.accuracies}


@dataclass
class FewShotResult:
    """Few-label accuracies of one feature set.

    Attributes:
        scores: ``{test subset: {protocol: {count: FewShotScore}}}``; the subset ``"all"``
            is the whole test set, others are those given as ``test_subsets``.
        labeled: ``{count: labeled training images per draw}``.
        short_classes: ``{count: {class index: images it has}}`` for classes with fewer
            images than the count (all of them are used).
        k: ``{count: neighbours of the kNN vote}``.
        weight_decay: ``{count: the probe's weight decay}``.
        draws: Draws per count (1 for ``all``).
        seed: Seed of the draws.
    """

    scores: dict[str, dict[str, dict[Count, FewShotScore]]]
    labeled: dict[Count, int]
    short_classes: dict[Count, dict[int, int]]
    k: dict[Count, int]
    weight_decay: dict[Count, float]
    draws: int
    seed: int
    counts: list[Count] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (counts become string keys)."""
        return {
            "counts": [str(c) for c in self.counts],
            "draws": self.draws,
            "seed": self.seed,
            "labeled_images": {str(c): n for c, n in self.labeled.items()},
            "short_classes": {
                str(c): {str(k): v for k, v in short.items()}
                for c, short in self.short_classes.items()
                if short
            },
            "knn_k": {str(c): k for c, k in self.k.items()},
            "linear_weight_decay": {str(c): wd for c, wd in self.weight_decay.items()},
            "scores": {
                subset: {
                    protocol: {str(c): score.to_dict() for c, score in per_count.items()}
                    for protocol, per_count in per_protocol.items()
                }
                for subset, per_protocol in self.scores.items()
            },
        }


def class_orders(labels: Tensor, draws: int, seed: int) -> list[list[Tensor]]:
    """One seeded permutation of each class's indices per draw.

    Depends on ``labels`` and ``seed`` only, so every encoder embedding the same images in
    the same order gets the same draws.

    Args:
        labels: ``(N,)`` int labels.
        draws: Number of draws.
        seed: Seed.

    Returns:
        ``orders[draw][c]``: int64 indices of class ``c`` (in sorted class order) in random
        order.
    """
    classes = labels.unique().tolist()
    members = [torch.nonzero(labels == c).flatten() for c in classes]
    orders = []
    for draw in range(draws):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + draw)
        orders.append([m[torch.randperm(m.numel(), generator=generator)] for m in members])
    return orders


def draw_labeled(labels: Tensor, count: int, draws: int, seed: int) -> list[Tensor]:
    """The labeled training indices of each draw: ``count`` per class (or all it has).

    Returns:
        ``draws`` sorted int64 index tensors.
    """
    return _labeled_sets(class_orders(labels, draws, seed), count)


def _labeled_sets(orders: list[list[Tensor]], count: int) -> list[Tensor]:
    return [torch.cat([order[:count] for order in per_class]).sort().values for per_class in orders]


def t_interval(
    values: Sequence[float],
    confidence: float = CONFIDENCE,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> tuple[float, float]:
    """Student-t interval of the mean; a single value (or no spread) gives the point.

    ``bounds`` clips the interval to the values the quantity can take: with two draws the
    t factor is 12.7, and an accuracy of 10.7% read "[-36.9, 58.4]".
    """
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, mean
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, len(values) - 1)) * spread
    half /= math.sqrt(len(values))
    return max(mean - half, bounds[0]), min(mean + half, bounds[1])


def few_label_evaluation(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    counts: Sequence[Count] = DEFAULT_COUNTS,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    protocols: Sequence[str] = PROTOCOLS,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    test_subsets: Mapping[str, Tensor] | None = None,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    max_iterations: int = 300,
) -> FewShotResult:
    """kNN and linear-probe top-1 with ``count`` labeled images per class, over seeded draws.

    Args:
        train_features: ``(N, D)`` training pool features.
        train_labels: ``(N,)`` labels in ``[0, C)`` (revealed only for the drawn images).
        test_features: ``(M, D)`` test features.
        test_labels: ``(M,)`` labels in ``[0, C)``.
        counts: Labels per class; ``"all"`` means every training image. A count larger than
            every class is left out of the result, with a warning.
        draws: Random labeled subsets per count (``all`` is drawn once).
        seed: Seed of the draws.
        protocols: Any of ``"knn"``, ``"linear"``.
        k: kNN neighbours (capped at the labeled images of a draw).
        temperature: kNN vote temperature.
        num_classes: ``C``; defaults to one more than the largest label.
        test_subsets: ``{name: (M,) bool mask}`` of extra test subsets to score as well
            (e.g. the test images without a near-copy in the training images).
        weight_decays: Candidates of the ``all`` probe, chosen on a validation split.
        max_iterations: L-BFGS iteration limit per probe fit.

    Returns:
        Mean, 95% t-interval and per-draw accuracies per subset, protocol and count.

    Raises:
        ContrastiveError: On one class only, every count larger than every class (some
            only are left out, with a warning), unknown protocols, bad draws or mismatched
            shapes.
    """
    counts = parse_counts(counts)
    _check_inputs(train_features, train_labels, test_features, test_labels, protocols, draws)
    problem = _Problem.of(train_features, train_labels, test_features, test_labels, num_classes)
    result = FewShotResult({}, {}, {}, {}, {}, draws, seed, counts)
    picks = _labeled_draws(result, problem)
    predictions: dict[str, dict[Count, list[Tensor]]] = {}
    for protocol in dict.fromkeys(protocols):
        if protocol == "knn":
            predictions[protocol], result.k = _knn_predictions(problem, picks, k, temperature)
        else:
            predictions[protocol], result.weight_decay = _linear_predictions(
                problem, picks, weight_decays, seed, max_iterations
            )
    result.scores = _scores(predictions, problem.test_labels, test_subsets)
    return result


@dataclass(frozen=True)
class _Problem:
    """The features and labels of one few-label evaluation, with standardised copies.

    The standardisation uses the whole training pool: its images are there, only their
    labels are missing.
    """

    train_features: Tensor
    labels: Tensor
    test_features: Tensor
    test_labels: Tensor
    num_classes: int
    standard_train: Tensor
    standard_test: Tensor

    @classmethod
    def of(
        cls,
        train_features: Tensor,
        train_labels: Tensor,
        test_features: Tensor,
        test_labels: Tensor,
        num_classes: int | None,
    ) -> _Problem:
        """Long labels, ``num_classes`` (default: the largest label + 1) and the standardised
        features."""
        if num_classes is None:
            num_classes = int(max(train_labels.max(), test_labels.max())) + 1
        mean, std = standardization(train_features)
        return cls(
            train_features,
            train_labels.long(),
            test_features,
            test_labels.long(),
            num_classes,
            (train_features.float() - mean) / std,
            (test_features.float() - mean) / std,
        )


def _labeled_draws(result: FewShotResult, problem: _Problem) -> dict[Count, list[Tensor]]:
    """The labeled training indices of every draw of each count of ``result``.

    Records the labeled images per draw and the classes shorter than the count in
    ``result``. Counts larger than every class are dropped from ``result.counts`` with a
    warning.

    Raises:
        ContrastiveError: On fewer than two classes, or when every count is larger than
            every class.
    """
    labels, num_classes = problem.labels, problem.num_classes
    sizes = torch.bincount(labels, minlength=num_classes)
    if int((sizes > 0).sum()) < 2:
        raise ContrastiveError("few-label evaluation needs at least two classes of training images")
    largest = int(sizes.max())
    too_large = [c for c in result.counts if c != ALL and c > largest]
    # Worded as the parameter, also read after the CLI's --counts.
    listed = ", ".join(str(c) for c in too_large)
    if too_large and len(too_large) == len(result.counts):
        raise ContrastiveError(
            f"counts {listed} exceed every class (the largest has {largest} images); "
            "use a smaller count, or 'all' for every labeled image"
        )
    if too_large:
        # A count no class can fill would repeat 'all' under another name: leave it out.
        warnings.warn(
            f"counts {listed} exceed every class (the largest has {largest} images); left out",
            stacklevel=3,
        )
        result.counts = [c for c in result.counts if c not in too_large]
    orders = class_orders(labels, result.draws, result.seed)
    picks: dict[Count, list[Tensor]] = {}
    for count in result.counts:
        if count == ALL:
            picks[count] = [torch.arange(labels.numel())]
        else:
            picks[count] = _labeled_sets(orders, count)
            short = {c: int(sizes[c]) for c in range(num_classes) if 0 < sizes[c] < count}
            result.short_classes[count] = short
        result.labeled[count] = int(picks[count][0].numel())
    return picks


def _knn_predictions(
    problem: _Problem, picks: Mapping[Count, list[Tensor]], k: int, temperature: float
) -> tuple[dict[Count, list[Tensor]], dict[Count, int]]:
    """kNN predictions of the test images per count and draw, and the ``k`` of each count.

    ``k`` is capped at the labeled images of a draw, so that tiny label sets still vote.
    """
    predictions: dict[Count, list[Tensor]] = {}
    ks: dict[Count, int] = {}
    for count, draws in picks.items():
        ks[count] = min(k, int(draws[0].numel()))
        predictions[count] = [
            knn_rankings(
                problem.train_features[pick],
                problem.labels[pick],
                problem.test_features,
                (ks[count],),
                temperature,
                problem.num_classes,
            )[ks[count]][:, 0]
            for pick in draws
        ]
    return predictions, ks


def _linear_predictions(
    problem: _Problem,
    picks: Mapping[Count, list[Tensor]],
    weight_decays: Sequence[float],
    seed: int,
    max_iterations: int,
) -> tuple[dict[Count, list[Tensor]], dict[Count, float]]:
    """Linear-probe predictions per count and draw, and the weight decay of each count.

    A few labels per class get ``wd = 1 / n_labeled``; ``all`` labels is
    :func:`~contrastive.evaluation.linear.linear_probe` with ``wd`` chosen on a validation
    split.
    """
    predictions: dict[Count, list[Tensor]] = {}
    weight_decay: dict[Count, float] = {}
    for count, draws in picks.items():
        if count == ALL:
            probe = linear_probe(
                problem.train_features,
                problem.labels,
                problem.test_features,
                problem.test_labels,
                problem.num_classes,
                weight_decays,
                seed=seed,
                max_iterations=max_iterations,
            )
            weight_decay[count] = probe.weight_decay
            predictions[count] = [probe.classifier.logits(problem.test_features).argmax(dim=1)]
            continue
        weight_decay[count] = 1.0 / int(draws[0].numel())
        predictions[count] = []
        for pick in draws:
            weight, bias = fit_logistic_regression(
                problem.standard_train[pick],
                problem.labels[pick],
                problem.num_classes,
                weight_decay[count],
                max_iterations,
            )
            logits = problem.standard_test @ weight.T + bias
            predictions[count].append(logits.argmax(dim=1))
    return predictions, weight_decay


def _scores(
    predictions: Mapping[str, Mapping[Count, list[Tensor]]],
    test_labels: Tensor,
    test_subsets: Mapping[str, Tensor] | None,
) -> dict[str, dict[str, dict[Count, FewShotScore]]]:
    """Mean, interval and per-draw top-1 per test subset (``all`` first), protocol and count."""
    subsets = {ALL: None, **{name: mask.bool() for name, mask in (test_subsets or {}).items()}}
    scores: dict[str, dict[str, dict[Count, FewShotScore]]] = {}
    for subset, mask in subsets.items():
        scores[subset] = {}
        for protocol, per_count in predictions.items():
            scores[subset][protocol] = {}
            for count, predicted in per_count.items():
                hits = torch.stack([p == test_labels for p in predicted])
                if mask is not None:
                    hits = hits[:, mask]
                values = [float(row.float().mean()) if row.numel() else math.nan for row in hits]
                score = FewShotScore(
                    sum(values) / len(values), *t_interval(values, bounds=(0.0, 1.0)), values, hits
                )
                scores[subset][protocol][count] = score
    return scores


def _check_inputs(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    protocols: Sequence[str],
    draws: int,
) -> None:
    check_feature_pair(train_features, test_features, "few-label")
    if train_labels.shape != (train_features.shape[0],) or test_labels.shape != (
        test_features.shape[0],
    ):
        raise ContrastiveError("few-label evaluation needs one label per feature row")
    if train_labels.numel() == 0 or test_labels.numel() == 0:
        raise ContrastiveError("few-label evaluation needs training and test images")
    if min(int(train_labels.min()), int(test_labels.min())) < 0:
        raise ContrastiveError(
            "few-label evaluation needs labeled images (-1 marks unlabeled images)"
        )
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown or not protocols:
        raise ContrastiveError(f"unknown protocol(s) {unknown}; choose from {PROTOCOLS}")
    if draws < 1:
        raise ContrastiveError(f"draws must be >= 1, got {draws}")
