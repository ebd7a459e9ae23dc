"""The evaluators' settings, names and argument checks, free of torch.

``contrastive eval --help`` lists these as choices and defaults, and checks flags with them
while parsing: kept apart from the evaluators (:mod:`.knn`, :mod:`.linear`,
:mod:`.fewshot`, which import torch), the command line answers without loading torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from contrastive.errors import ContrastiveError

#: The feature sets an evaluation compares: the encoder's, and the two baselines'.
MODEL, RANDOM_INIT, RAW_PIXELS = "model", "random_init", "raw_pixels"

#: kNN neighbour similarities.
METRICS = ("cosine", "euclidean")

#: The linear probe's candidate weight decays, chosen on a validation split.
DEFAULT_WEIGHT_DECAYS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)

#: The few-label count meaning "every labeled training image".
ALL = "all"
#: Labeled images per class that ``eval fewshot`` scores by default.
DEFAULT_COUNTS: tuple[int | str, ...] = (1, 2, 5, 10, 25, 100, ALL)
#: Random draws of the labeled images per count.
DEFAULT_DRAWS = 5

Count = int | str


def check_temperature(temperature: float) -> None:
    """Refuses a vote temperature that is not finite and > 0 (NaN included).

    ``T = inf`` would weigh every neighbour alike, silently another method.

    Raises:
        ContrastiveError: If ``temperature`` is not a finite number > 0.
    """
    if not 0 < temperature < math.inf:
        raise ContrastiveError(f"temperature must be finite and > 0, got {temperature}")


def check_validation_fraction(fraction: float) -> None:
    """Refuses a validation fraction outside (0, 1) (NaN included).

    Raises:
        ContrastiveError: If ``fraction`` is not in (0, 1).
    """
    # Worded as the parameter: the CLI's --val-fraction is checked by argparse first.
    if not 0 < fraction < 1:
        raise ContrastiveError(f"validation fraction must lie in (0, 1), got {fraction}")


def parse_counts(text: str | Sequence[Count]) -> list[Count]:
    """``"1,10,all"`` -> ``[1, 10, "all"]``, sorted, ``all`` last.

    Raises:
        ContrastiveError: On a count that is not a positive integer or ``all``.
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    counts: set[int] = set()
    with_all = False
    for part in parts:
        item = str(part).strip().lower()
        if not item:
            continue
        if item == ALL:
            with_all = True
        elif item.isdigit() and int(item) >= 1:
            counts.add(int(item))
        else:
            raise ContrastiveError(f"counts: expected positive integers or 'all', got {part!r}")
    if not counts and not with_all:
        raise ContrastiveError("counts is empty: give positive integers or 'all'")
    return [*sorted(counts), *([ALL] if with_all else [])]
