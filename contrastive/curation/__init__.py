"""Curating a folder with its own embeddings: duplicates, outliers, label mistakes, selection.

* :mod:`~contrastive.curation.duplicates`: groups of exact and near copies (pixel space)
  within a folder and across two, and embedding-space similar pairs.
* :mod:`~contrastive.curation.outliers`: images far from everything, tiny isolated clusters.
* :mod:`~contrastive.curation.label_issues`: suspected label mistakes (cleanlab on
  out-of-fold probabilities of a probe on the embeddings).
* :mod:`~contrastive.curation.selection`: what to label first (TypiClust, k-center greedy).
* :mod:`~contrastive.curation.pipeline`: all of them over one embedded folder (:func:`curate`),
  looked at as :mod:`~contrastive.curation.settings` says.
* :mod:`~contrastive.curation.report`: the report folder (CSV files and contact sheets);
  imported on its own (it needs matplotlib).

``contrastive curate --run RUN --data DIR --out REPORT`` runs the pipeline and writes the
report; ``notebooks/04_curate.ipynb`` walks through it on the demo data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contrastive.lazy_names import lazy_names

# Loaded on first use: the analyses import torch, `contrastive curate --help` needs none.
_HOMES = {
    "Curation": "contrastive.curation.pipeline",
    "CurationSettings": "contrastive.curation.settings",
    "DuplicateGroup": "contrastive.curation.duplicates",
    "LabelIssues": "contrastive.curation.label_issues",
    "Selection": "contrastive.curation.selection",
    "UnusualGroup": "contrastive.curation.outliers",
    "curate": "contrastive.curation.pipeline",
    "duplicate_groups": "contrastive.curation.duplicates",
    "find_cross_duplicates": "contrastive.curation.duplicates",
    "find_duplicates": "contrastive.curation.duplicates",
    "find_label_issues": "contrastive.curation.label_issues",
    "kcenter_greedy": "contrastive.curation.selection",
    "neighbourhood_similarity": "contrastive.curation.outliers",
    "outliers": "contrastive.curation.outliers",
    "select": "contrastive.curation.selection",
    "similar_pairs": "contrastive.curation.duplicates",
    "typiclust": "contrastive.curation.selection",
    "unusual_groups": "contrastive.curation.outliers",
}

__all__ = [
    "Curation",
    "CurationSettings",
    "DuplicateGroup",
    "LabelIssues",
    "Selection",
    "UnusualGroup",
    "curate",
    "duplicate_groups",
    "find_cross_duplicates",
    "find_duplicates",
    "find_label_issues",
    "kcenter_greedy",
    "neighbourhood_similarity",
    "outliers",
    "select",
    "similar_pairs",
    "typiclust",
    "unusual_groups",
]

if TYPE_CHECKING:
    from contrastive.curation.duplicates import (
        DuplicateGroup,
        duplicate_groups,
        find_cross_duplicates,
        find_duplicates,
        similar_pairs,
    )
    from contrastive.curation.label_issues import LabelIssues, find_label_issues
    from contrastive.curation.outliers import (
        UnusualGroup,
        neighbourhood_similarity,
        outliers,
        unusual_groups,
    )
    from contrastive.curation.pipeline import Curation, curate
    from contrastive.curation.selection import Selection, kcenter_greedy, select, typiclust
    from contrastive.curation.settings import CurationSettings

__getattr__, __dir__ = lazy_names(__name__, _HOMES)
