"""Input checks shared by the evaluation protocols (kNN, linear probe, few-label)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from contrastive.errors import ContrastiveError
from contrastive.neighbours import check_rows


def as_tensors(*values: Any) -> tuple[Tensor, ...]:
    """Each of ``values`` as a tensor (NumPy arrays and lists too; a tensor stays itself).

    The protocols compute in torch; a caller holding NumPy arrays (as
    :class:`~contrastive.embeddings.Embeddings` stores them) should not have to convert.
    """
    return tuple(torch.as_tensor(value) for value in values)


def check_feature_pair(train_features: Tensor, test_features: Tensor, protocol: str) -> None:
    """Train and test features must be finite, 2-D (rows x features) and equally wide.

    Args:
        train_features: ``(N, D)`` features.
        test_features: ``(M, D)`` features.
        protocol: Names the protocol in the message, e.g. ``"kNN"``.

    Raises:
        ContrastiveError: If either is not 2-D, holds NaN or inf, or their widths differ.
    """
    check_rows(train_features, f"{protocol} train features")
    check_rows(test_features, f"{protocol} test features")
    if train_features.shape[1] != test_features.shape[1]:
        raise ContrastiveError(
            f"train and test features differ in width: {train_features.shape[1]} vs "
            f"{test_features.shape[1]}"
        )
