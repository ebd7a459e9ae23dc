"""Curating a folder with its own embeddings: duplicates, outliers, label mistakes, selection.

* :mod:`~contrastive.curation.duplicates`: groups of exact and near copies (pixel space)
  within a folder and across two, and embedding-space similar pairs.
* :mod:`~contrastive.curation.outliers`: images far from everything, tiny isolated clusters.
* :mod:`~contrastive.curation.label_issues`: suspected label mistakes (cleanlab on
  out-of-fold probabilities of a probe on the embeddings).
* :mod:`~contrastive.curation.selection`: what to label first (TypiClust, k-center greedy).
* :mod:`~contrastive.curation.pipeline`: all of them over one embedded folder (:func:`curate`).
* :mod:`~contrastive.curation.report`: the report folder (CSV files and contact sheets);
  imported on its own (it needs matplotlib).

``contrastive curate --run RUN --data DIR --out REPORT`` runs the pipeline and writes the
report; ``notebooks/04_curate.ipynb`` walks through it on the demo data.
"""

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
from contrastive.curation.pipeline import Curation, CurationSettings, curate
from contrastive.curation.selection import Selection, kcenter_greedy, select, typiclust

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
