"""Outliers rank the lonely point first; tiny isolated clusters are unusual groups."""

from __future__ import annotations

import numpy as np
import pytest

from contrastive.curation.outliers import neighbourhood_similarity, outliers, unusual_groups
from contrastive.errors import ContrastiveError
from contrastive.explore import outliers as explore_outliers


def blobs(seed: int = 0, per_blob: int = 40, dims: int = 16) -> np.ndarray:
    """Three tight blobs along e0, e1, e2."""
    rng = np.random.default_rng(seed)
    eye = np.eye(dims, dtype=np.float32)
    return np.concatenate(
        [eye[axis] + 0.1 * rng.standard_normal((per_blob, dims)) for axis in range(3)]
    ).astype(np.float32)


def test_the_point_far_from_everything_ranks_first() -> None:
    data = np.concatenate([blobs(), np.eye(16, dtype=np.float32)[[9]]])
    indices, scores = outliers(data, k=5, count=3)
    assert indices[0] == len(data) - 1
    assert scores[0] < 0.3 < scores[1]
    assert np.all(np.diff(scores) >= 0)
    every, nearest = neighbourhood_similarity(data, k=5)
    assert every.argmin() == len(data) - 1 and nearest[0] in range(40)


def test_explore_outliers_is_the_curation_function() -> None:
    assert explore_outliers is outliers


def test_a_tiny_isolated_group_is_unusual_and_not_an_outlier() -> None:
    rng = np.random.default_rng(1)
    group = np.eye(16, dtype=np.float32)[8] + 0.05 * rng.standard_normal((3, 16))
    data = np.concatenate([blobs(), group.astype(np.float32)])
    found = unusual_groups(data, n_clusters=8, max_size=4)
    assert sorted(found[0].members.tolist()) == [120, 121, 122]
    assert found[0].isolation < 0.2
    # Members support each other: none of them is among the top outliers at k=2.
    top, _ = outliers(data, k=2, count=3)
    assert not set(top.tolist()) & {120, 121, 122}


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ContrastiveError, match="count"):
        outliers(np.eye(4), count=0)
    with pytest.raises(ContrastiveError, match="at least 2 images"):
        neighbourhood_similarity(np.eye(4)[:1])
    with pytest.raises(ContrastiveError, match="n_clusters must be between 2 and 4"):
        unusual_groups(np.eye(4), n_clusters=9)
    # 0 is a mistake to name, not a request for the default (None).
    with pytest.raises(ContrastiveError, match="n_clusters must be between 2 and 4, got 0"):
        unusual_groups(np.eye(4), n_clusters=0)
    with pytest.raises(ContrastiveError, match="max_size must be at least 2"):
        unusual_groups(np.eye(4), max_size=0)


def test_a_set_too_small_to_tell_reports_no_unusual_group() -> None:
    # Three images in two clusters: a "cluster" of two is above the mean size, not tiny.
    data = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    assert unusual_groups(data) == []
    # Asked for explicitly, a tiny size still applies.
    assert [len(group.members) for group in unusual_groups(data, max_size=2)] == [2]


def test_nan_rows_and_vectors_are_refused_not_ranked() -> None:
    data = blobs()
    data[7, 2] = np.nan
    with pytest.raises(
        ContrastiveError, match=r"embeddings contain NaN or inf in 1 row\(s\), first row 7"
    ):
        outliers(data)
    with pytest.raises(
        ContrastiveError, match=r"embeddings must be 2-D \(rows x features\), got shape \(16,\)"
    ):
        outliers(blobs()[0])
