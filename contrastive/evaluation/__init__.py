"""Measuring representation quality: weighted kNN and linear probes on frozen features.

The maths are pure functions on tensors (:mod:`.knn`, :mod:`.linear`, :mod:`.metrics`);
:mod:`.inputs` turns embeddings files or image folders (plus baselines) into feature sets,
:mod:`.labels` checks and aligns their labels, and :mod:`.report` writes JSON and tables.
"""

from contrastive.evaluation.knn import knn_classify, knn_rankings
from contrastive.evaluation.linear import LinearProbeResult, linear_probe
from contrastive.evaluation.metrics import (
    classification_summary,
    confusion_matrix,
    per_class_accuracy,
    topk_accuracy,
)

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
