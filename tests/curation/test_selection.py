"""TypiClust picks the densest image of each cluster; k-center greedy shrinks the radius."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from contrastive.curation import selection as selection_module
from contrastive.curation.selection import (
    FULL_KMEANS_MAX_CLUSTERS,
    SAME_IMAGE_DISTANCE,
    kcenter_greedy,
    select,
    typiclust,
)
from contrastive.errors import ContrastiveError

BLOBS = 5
PER_BLOB = 30


def blobs_with_centres(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Well-separated unit-vector blobs in 32-D; each holds its exact centre at a random row.

    Returns:
        ``(embeddings, blob of each row, row of each blob's centre)``.
    """
    rng = np.random.default_rng(seed)
    centres = np.eye(32, dtype=np.float32)[:BLOBS]
    rows, blob_of = [], []
    for blob, centre in enumerate(centres):
        points = centre + 0.08 * rng.standard_normal((PER_BLOB, 32))
        points[rng.integers(PER_BLOB)] = centre
        rows.append(points)
        blob_of += [blob] * PER_BLOB
    data = np.concatenate(rows).astype(np.float32)
    order = rng.permutation(len(data))
    data, blob_of = data[order], np.asarray(blob_of)[order]
    centre_rows = np.array([np.flatnonzero((data == c).all(axis=1))[0] for c in centres])
    return data, blob_of, centre_rows


def test_typiclust_picks_one_per_cluster_and_its_densest_point() -> None:
    data, blob_of, centre_rows = blobs_with_centres()
    selection = typiclust(data, BLOBS)
    assert sorted(blob_of[selection.indices].tolist()) == list(range(BLOBS))
    # The exact centre is closest on average to its blob's points: the most typical.
    assert sorted(selection.indices.tolist()) == sorted(centre_rows.tolist())
    assert selection.cluster_sizes.tolist() == [PER_BLOB] * BLOBS
    assert (selection.scores > 0).all()


def test_minibatch_kmeans_also_picks_each_blobs_centre() -> None:
    data, blob_of, centre_rows = blobs_with_centres(3)
    selection = typiclust(data, BLOBS, full_kmeans_max_clusters=0)
    assert sorted(selection.indices.tolist()) == sorted(centre_rows.tolist())
    assert selection.cluster_sizes.tolist() == [PER_BLOB] * BLOBS


def test_kmeans_kind_follows_the_number_of_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    used = []
    for name in ("KMeans", "MiniBatchKMeans"):
        original = getattr(selection_module, name)

        def spy(*args, _original=original, _name=name, **kwargs):  # noqa: ANN002, ANN003, ANN202
            used.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(selection_module, name, spy)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((400, 8)).astype(np.float32)
    typiclust(data, FULL_KMEANS_MAX_CLUSTERS)
    typiclust(data, FULL_KMEANS_MAX_CLUSTERS + 1)
    assert used == ["KMeans", "MiniBatchKMeans"]


@pytest.mark.parametrize("picks", [1, 7, 40])
def test_covering_radii_match_the_definition(picks: int) -> None:
    rng = np.random.default_rng(picks)
    data = rng.standard_normal((300, 6)).astype(np.float32)
    selection = typiclust(data, picks)
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    distances = np.sqrt(np.clip(2 - 2 * unit @ unit[selection.indices].T, 0, None))
    # After s picks: the farthest any image is from its nearest of the first s.
    expected = [distances[:, : s + 1].min(axis=1).max() for s in range(picks)]
    np.testing.assert_allclose(selection.radii, expected, rtol=1e-4, atol=1e-5)
    assert selection.radii[0] > selection.radii[-1] or picks == 1


def test_typiclust_tops_up_when_kmeans_finds_fewer_clusters() -> None:
    data = np.repeat(np.eye(4, dtype=np.float32)[:2], 5, axis=0)  # two distinct points
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # k-means' own warning is handled, not passed on
        selection = typiclust(data, 3)
    assert len(selection) == 3 and len(set(selection.indices.tolist())) == 3
    assert selection.clusters[-1] == -1
    # Copies sit at distance 0: typicality is bounded, not 1 / 1e-12.
    assert selection.scores.max() == pytest.approx(1 / SAME_IMAGE_DISTANCE)
    with pytest.warns(UserWarning, match="only 2 distinct images among 10: 1 of the 3 picks"):
        select(data, 3, "kcenter")


def test_kcenter_greedy_covers_the_blobs_and_shrinks_the_radius() -> None:
    data, blob_of, _ = blobs_with_centres(1)
    selection = kcenter_greedy(data, 12)
    assert sorted(set(blob_of[selection.indices[:BLOBS]].tolist())) == list(range(BLOBS))
    assert np.all(np.diff(selection.radii) <= 1e-6)
    # Once every blob holds a pick, no image is farther than a blob's width from one.
    assert selection.radii[BLOBS - 1] < 0.6 * selection.radii[BLOBS - 2]
    # Each pick was the farthest image from the earlier ones: its distance is the radius before.
    np.testing.assert_allclose(selection.scores[1:], selection.radii[:-1], rtol=1e-5)


def test_kcenter_greedy_starts_from_labeled_images() -> None:
    data, blob_of, _ = blobs_with_centres(2)
    labeled = np.flatnonzero(blob_of < 3)
    selection = kcenter_greedy(data, 2, initial=labeled)
    assert sorted(blob_of[selection.indices].tolist()) == [3, 4]


def test_counts_and_methods_are_checked() -> None:
    data = np.eye(6, dtype=np.float32)
    with pytest.raises(ContrastiveError, match="cannot select 7 images"):
        select(data, 7)
    with pytest.raises(ContrastiveError, match="cannot select 0"):
        kcenter_greedy(data, 0)
    with pytest.raises(ContrastiveError, match="unknown selection method 'random'"):
        select(data, 2, method="random")


@pytest.mark.parametrize("method", ["typiclust", "kcenter"])
def test_nan_or_inf_rows_are_refused(method: str) -> None:
    data = np.eye(6, dtype=np.float32)
    data[4, 3] = np.nan
    with pytest.raises(
        ContrastiveError, match=r"embeddings contain NaN or inf in 1 row\(s\), first row 4"
    ):
        select(data, 3, method=method)


@pytest.mark.parametrize("method", ["typiclust", "kcenter"])
def test_picks_complement_images_labelled_elsewhere(method: str) -> None:
    data, blob_of, centre_rows = blobs_with_centres(4)
    # Labelled images outside the folder: points of blobs 0-2 (copies of their centres).
    labelled = data[centre_rows[:3]] + 0.01
    selection = select(data, 2, method, labelled=labelled)
    assert sorted(blob_of[selection.indices].tolist()) == [3, 4]
    assert selection.labelled == 3 and selection.labelled_in_folder == 0
    # Without them the same count goes to the largest / farthest blobs, labelled or not.
    unaware = select(data, 2, method)
    assert sorted(blob_of[unaware.indices].tolist()) != [3, 4]


def test_typiclust_beside_labelled_takes_each_open_blobs_centre() -> None:
    data, blob_of, centre_rows = blobs_with_centres(5)
    selection = select(data, 3, "typiclust", labelled=data[centre_rows[:2]])
    # Blobs 0 and 1 hold a labelled image; the picks are the centres of the three others.
    assert sorted(selection.indices.tolist()) == sorted(centre_rows[2:].tolist())
    # The radii count the labelled images as picks: after all picks every blob is covered.
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    given = unit[np.concatenate([centre_rows[:2], selection.indices])]
    distances = np.sqrt(np.clip(2 - 2 * unit @ given.T, 0, None))
    expected = [distances[:, : 2 + s + 1].min(axis=1).max() for s in range(3)]
    np.testing.assert_allclose(selection.radii, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["typiclust", "kcenter"])
def test_images_of_the_folder_already_labelled_are_never_picked(method: str) -> None:
    data, blob_of, centre_rows = blobs_with_centres(6)
    labelled_rows = np.flatnonzero(blob_of == 0)[:10]
    selection = select(data, 140, method, labelled=data[labelled_rows])
    assert not set(selection.indices.tolist()) & set(labelled_rows.tolist())
    assert len(set(selection.indices.tolist())) == 140
    assert selection.labelled_in_folder == 10
    with pytest.raises(ContrastiveError, match=r"between 1 and 140 \(.*less the 10 already"):
        select(data, 141, method, labelled=data[labelled_rows])


def test_labelled_embeddings_of_another_width_are_refused() -> None:
    data, _, _ = blobs_with_centres()
    with pytest.raises(ContrastiveError, match=r"shape \(2, 8\); the folder's have 32 columns"):
        select(data, 2, labelled=np.ones((2, 8), np.float32))
