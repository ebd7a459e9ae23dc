"""Linear probe on frozen, cached features: multinomial logistic regression, full-batch L-BFGS.

The standard offline protocol: features are standardised with the training mean and standard
deviation, a softmax classifier minimises the mean cross-entropy plus ``wd / 2 * |W|^2`` (the
bias is not penalised), and ``wd`` is chosen by accuracy on a stratified validation split
carved from the training features before the final fit on all of them. This is the objective
of scikit-learn's ``LogisticRegression(C=1 / (wd * N))``; the problem is convex, so both reach
the same classifier.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastive.errors import ContrastiveError
from contrastive.evaluation.checks import as_tensors, check_feature_pair
from contrastive.evaluation.metrics import classification_summary
from contrastive.evaluation.settings import DEFAULT_WEIGHT_DECAYS, check_validation_fraction

log = logging.getLogger(__name__)


@dataclass
class LinearClassifier:
    """A fitted softmax classifier on standardised features.

    Attributes:
        weight: ``(C, D)`` weights on standardised features.
        bias: ``(C,)`` biases.
        mean: ``(D,)`` training-feature mean.
        std: ``(D,)`` training-feature standard deviation.
    """

    weight: Tensor
    bias: Tensor
    mean: Tensor
    std: Tensor

    def logits(self, features: Tensor) -> Tensor:
        """Class scores ``(M, C)`` for raw features ``(M, D)``."""
        return ((features.float() - self.mean) / self.std) @ self.weight.T + self.bias


@dataclass
class LinearProbeResult:
    """Outcome of :func:`linear_probe`.

    Attributes:
        summary: Top-1/top-5, per-class accuracy and confusion matrix on the test features
            (see :func:`~contrastive.evaluation.metrics.classification_summary`).
        weight_decay: The chosen ``wd``.
        validation_accuracy: ``{wd: top-1 on the validation split}`` for every candidate.
        classifier: The classifier refitted on all training features.
    """

    summary: dict[str, object]
    weight_decay: float
    validation_accuracy: dict[float, float] = field(default_factory=dict)
    classifier: LinearClassifier | None = None

    def __repr__(self) -> str:
        # The dataclass repr printed the classifier's tensors and the confusion matrix:
        # 60 lines in a notebook for one probe.
        top = ", ".join(
            f"{name} {100 * float(value):.2f}"
            for name, value in self.summary.items()
            if name.startswith("top")
        )
        return f"LinearProbeResult({top}, weight_decay={self.weight_decay:g})"


def standardization(features: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and standard deviation ``(D,)``; constant dimensions get std 1."""
    features = features.float()
    mean = features.mean(dim=0)
    std = features.std(dim=0, correction=0)
    return mean, torch.where(std > 1e-12, std, torch.ones_like(std))


def fit_logistic_regression(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    weight_decay: float,
    max_iterations: int = 300,
    initial: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Minimises ``mean cross-entropy + wd / 2 * |W|^2`` with full-batch L-BFGS.

    Args:
        features: ``(N, D)`` float features (already standardised).
        labels: ``(N,)`` int labels in ``[0, num_classes)``.
        num_classes: ``C``.
        weight_decay: ``wd >= 0``.
        max_iterations: L-BFGS iteration limit.
        initial: Optional ``(weight (C, D), bias (C,))`` warm start.

    Returns:
        ``(weight (C, D), bias (C,))``.
    """
    features = features.float()
    labels = labels.long()
    if initial is None:
        weight = torch.zeros(num_classes, features.shape[1])
        bias = torch.zeros(num_classes)
    else:
        weight, bias = (t.detach().clone() for t in initial)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iterations,
        history_size=20,
        tolerance_grad=1e-5,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels)
        loss = loss + 0.5 * weight_decay * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def stratified_split(labels: Tensor, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Splits indices class by class into a fitting part and a validation part.

    Each class with at least two samples gives ``round(fraction * count)`` samples (at least
    one, and never all) to validation.

    Args:
        labels: ``(N,)`` int labels.
        fraction: Validation fraction in (0, 1).
        seed: Seed of the shuffle.

    Returns:
        ``(fit_indices, validation_indices)``, int64, sorted.

    Raises:
        ContrastiveError: If ``fraction`` is not in (0, 1).
    """
    check_validation_fraction(fraction)
    generator = torch.Generator().manual_seed(seed)
    fit_parts, validation_parts = [], []
    for label in labels.unique():
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        count = members.numel()
        taken = 0 if count < 2 else min(count - 1, max(1, round(fraction * count)))
        validation_parts.append(members[:taken])
        fit_parts.append(members[taken:])
    return torch.cat(fit_parts).sort().values, torch.cat(validation_parts).sort().values


# Validation images below which an edge choice of the weight decay says little.
_FEW_VALIDATION_IMAGES = 50


def select_weight_decay(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    weight_decays: Sequence[float],
    validation_fraction: float = 0.1,
    seed: int = 0,
    max_iterations: int = 300,
) -> tuple[float, dict[float, float], dict[float, tuple[Tensor, Tensor]]]:
    """Chooses ``wd`` by top-1 on a stratified validation split of standardised features.

    Candidates are fitted from the strongest to the weakest penalty, each warm-started from
    the previous solution, which saves most of the L-BFGS iterations. Ties go to the
    stronger penalty.

    Returns:
        ``(best_wd, {wd: validation top-1}, {wd: (weight (C, D), bias (C,))})``.
    """
    fit_indices, validation_indices = stratified_split(labels, validation_fraction, seed)
    if validation_indices.numel() == 0:
        raise ContrastiveError(
            "too few training samples to carve a validation split; give a single weight decay"
        )
    fit_features, fit_labels = features[fit_indices], labels[fit_indices]
    validation_features = features[validation_indices]
    validation_labels = labels[validation_indices]
    accuracies: dict[float, float] = {}
    solutions: dict[float, tuple[Tensor, Tensor]] = {}
    solution = None
    for weight_decay in sorted(weight_decays, reverse=True):
        solution = fit_logistic_regression(
            fit_features, fit_labels, num_classes, weight_decay, max_iterations, solution
        )
        predicted = (validation_features @ solution[0].T + solution[1]).argmax(dim=1)
        accuracies[weight_decay] = (predicted == validation_labels).float().mean().item()
        solutions[weight_decay] = solution
    best = max(accuracies, key=lambda wd: (accuracies[wd], wd))
    if len(set(accuracies.values())) == 1 and len(accuracies) > 1:
        # Every candidate scores the same (a handful of validation images): the choice is
        # the tie-break, and a wider grid would tie as well.
        log.warning(
            "the %d validation image(s) cannot tell the weight decays apart (all %.1f%%); "
            "used %g, the strongest",
            validation_indices.numel(),
            100 * next(iter(accuracies.values())),
            best,
        )
    elif len(accuracies) > 1 and best in (min(accuracies), max(accuracies)):
        count = validation_indices.numel()
        advice = (
            "consider a wider one (eval linear --weight-decay; weight_decays in Python)"
            if count >= _FEW_VALIDATION_IMAGES
            # A few images pick an edge by chance as often as by need.
            else "so few images choose by chance as much as by need; more labels say more"
        )
        log.warning(
            "the chosen weight decay %g is at the edge of the grid %s, chosen on %d validation "
            "image(s); %s",
            best,
            sorted(accuracies),
            count,
            advice,
        )
    return best, accuracies, solutions


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int | None = None,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    validation_fraction: float = 0.1,
    seed: int = 0,
    max_iterations: int = 300,
) -> LinearProbeResult:
    """Trains a linear classifier on frozen training features and scores the test features.

    Args:
        train_features: ``(N, D)`` features (a tensor or NumPy array, as are the labels).
        train_labels: ``(N,)`` labels in ``[0, C)``.
        test_features: ``(M, D)`` features.
        test_labels: ``(M,)`` labels in ``[0, C)``.
        num_classes: ``C``; defaults to one more than the largest label.
        weight_decays: Candidate ``wd``; with one value no validation split is carved.
        validation_fraction: Share of each class held out to choose ``wd``.
        seed: Seed of the validation split.
        max_iterations: L-BFGS iteration limit per fit.

    Returns:
        The test summary, chosen ``wd``, validation accuracies and fitted classifier.

    Raises:
        ContrastiveError: On mismatched widths, NaN or inf features, negative labels, an
            empty grid or a validation fraction outside (0, 1).
    """
    train_features, train_labels, test_features, test_labels = as_tensors(
        train_features, train_labels, test_features, test_labels
    )
    _check_inputs(train_features, train_labels, test_features, test_labels, weight_decays)
    # Even with one wd (no split made): a bad fraction is a mistake worth naming.
    check_validation_fraction(validation_fraction)
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    mean, std = standardization(train_features)
    train_standard = (train_features.float() - mean) / std
    labels = train_labels.long()
    validation_accuracy: dict[float, float] = {}
    start = None
    if len(weight_decays) == 1:
        weight_decay = float(weight_decays[0])
    else:
        weight_decay, validation_accuracy, solutions = select_weight_decay(
            train_standard,
            labels,
            num_classes,
            weight_decays,
            validation_fraction,
            seed,
            max_iterations,
        )
        # The validation fit saw 90% of the same data: a close warm start.
        start = solutions[weight_decay]
    weight, bias = fit_logistic_regression(
        train_standard, labels, num_classes, weight_decay, max_iterations, start
    )
    classifier = LinearClassifier(weight, bias, mean, std)
    logits = classifier.logits(test_features)
    ranked = logits.topk(min(5, num_classes), dim=1).indices
    summary = classification_summary(ranked, test_labels.long(), num_classes)
    return LinearProbeResult(summary, weight_decay, validation_accuracy, classifier)


def _check_inputs(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    weight_decays: Sequence[float],
) -> None:
    check_feature_pair(train_features, test_features, "linear-probe")
    if train_labels.shape != (train_features.shape[0],) or test_labels.shape != (
        test_features.shape[0],
    ):
        raise ContrastiveError("the linear probe needs one label per feature row")
    if min(int(train_labels.min()), int(test_labels.min())) < 0:
        raise ContrastiveError("linear-probe labels must be >= 0 (-1 marks unlabeled images)")
    if not weight_decays or min(weight_decays) < 0:
        raise ContrastiveError(f"weight decays must be >= 0, got {list(weight_decays)}")
