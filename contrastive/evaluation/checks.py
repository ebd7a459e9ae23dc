"""Input checks shared by the evaluation protocols (kNN, linear probe, few-label)."""

from __future__ import annotations

from torch import Tensor

from contrastive.errors import ContrastiveError


def check_feature_pair(train_features: Tensor, test_features: Tensor, protocol: str) -> None:
    """Train and test features must be 2-D (samples x dimensions) and equally wide.

    Args:
        train_features: ``(N, D)`` features.
        test_features: ``(M, D)`` features.
        protocol: Names the protocol in the message, e.g. ``"kNN"``.

    Raises:
        ContrastiveError: If either is not 2-D or their widths differ.
    """
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ContrastiveError(f"{protocol} features must be 2-D (samples x dimensions)")
    if train_features.shape[1] != test_features.shape[1]:
        raise ContrastiveError(
            f"train and test features differ in width: {train_features.shape[1]} vs "
            f"{test_features.shape[1]}"
        )
