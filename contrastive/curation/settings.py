"""How :func:`~contrastive.curation.curate` looks at a folder, free of torch.

``contrastive curate --help`` lists these choices and defaults: kept apart from the
analyses (which import torch), the command line answers without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from contrastive.data.near_copy_settings import DEFAULT_THRESHOLD
from contrastive.errors import ContrastiveError

#: What to label first: TypiClust, or k-center greedy (:mod:`.selection`).
SELECTION_METHODS = ("typiclust", "kcenter")

#: Folds of the out-of-fold probe probabilities (:mod:`.label_issues`).
DEFAULT_FOLDS = 5

#: ``label_issues`` modes: run when the folder has classes, always (error without), never.
LABEL_ISSUE_MODES = ("auto", "yes", "no")


@dataclass
class CurationSettings:
    """How :func:`~contrastive.curation.curate` looks at a folder.

    Attributes:
        near_copy_threshold: Fingerprint cosine similarity from which two images are near
            copies (:mod:`contrastive.data.near_copies`).
        outlier_k: Neighbours in the outlier score.
        select: Images to pick for labeling (None: no selection).
        select_method: ``typiclust`` or ``kcenter``.
        label_issues: ``auto`` (when the folder has class sub-folders), ``yes`` or ``no``.
        folds: Folds of the out-of-fold probe probabilities.
        seed: Seed of k-means and of the folds.
        exact_search: Compare every image with every other in the copy and outlier
            searches at any size; above :data:`~contrastive.neighbours.APPROXIMATE_ROWS`
            images they are approximate otherwise.
    """

    near_copy_threshold: float = DEFAULT_THRESHOLD
    outlier_k: int = 10
    select: int | None = None
    select_method: str = "typiclust"
    label_issues: str = "auto"
    folds: int = DEFAULT_FOLDS
    seed: int = 0
    exact_search: bool = False

    def __post_init__(self) -> None:
        if self.select_method not in SELECTION_METHODS:
            raise ContrastiveError(
                f"unknown selection method {self.select_method!r}; choose one of "
                f"{', '.join(SELECTION_METHODS)}"
            )
        if self.label_issues not in LABEL_ISSUE_MODES:
            raise ContrastiveError(
                f"label_issues must be one of {', '.join(LABEL_ISSUE_MODES)}, "
                f"got {self.label_issues!r}"
            )
