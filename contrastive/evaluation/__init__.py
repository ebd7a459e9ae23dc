"""Measuring representation quality: weighted kNN and linear probes on frozen features.

The maths are pure functions on tensors (:mod:`.knn`, :mod:`.linear`, :mod:`.metrics`);
:mod:`.inputs` turns embeddings files or image folders (plus baselines) into feature sets,
:mod:`.labels` checks and aligns their labels, and :mod:`.report` writes JSON and tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive.lazy_names import lazy_names

# Loaded on first use, so that `contrastive health` reads a run's measures without torch.
_HOMES = {
    "LinearProbeResult": "contrastive.evaluation.linear",
    "classification_summary": "contrastive.evaluation.metrics",
    "confusion_matrix": "contrastive.evaluation.metrics",
    "knn_classify": "contrastive.evaluation.knn",
    "knn_rankings": "contrastive.evaluation.knn",
    "linear_probe": "contrastive.evaluation.linear",
    "per_class_accuracy": "contrastive.evaluation.metrics",
    "topk_accuracy": "contrastive.evaluation.metrics",
}

__all__ = [
    "LinearProbeResult",
    "classification_summary",
    "confusion_matrix",
    "knn_classify",
    "knn_rankings",
    "linear_probe",
    "per_class_accuracy",
    "topk_accuracy",
]

if TYPE_CHECKING:
    from contrastive.evaluation.knn import knn_classify, knn_rankings
    from contrastive.evaluation.linear import LinearProbeResult, linear_probe
    from contrastive.evaluation.metrics import (
        classification_summary,
        confusion_matrix,
        per_class_accuracy,
        topk_accuracy,
    )

__getattr__, __dir__ = lazy_names(__name__, _HOMES)
