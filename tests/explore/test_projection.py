"""2-D projections: PCA, t-SNE, UMAP (real when installed, else a clear error)."""

from __future__ import annotations

import sys
import types
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from contrastive.errors import ContrastiveError
from contrastive.explore import Embeddings, project_2d


def _clusters_only(toy: Embeddings, roles: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
    rows = roles.cluster_a + roles.cluster_b
    return toy.embeddings[rows], np.array([0] * 10 + [1] * 10)


def test_pca_separates_the_two_clusters(toy: Embeddings, roles: SimpleNamespace) -> None:
    embeddings, cluster = _clusters_only(toy, roles)
    coordinates = project_2d(embeddings, "pca")
    assert coordinates.shape == (20, 2) and coordinates.dtype == np.float32
    gap = np.linalg.norm(coordinates[cluster == 0].mean(0) - coordinates[cluster == 1].mean(0))
    spread = max(coordinates[cluster == c].std(0).max() for c in (0, 1))
    assert gap > 4 * spread
    np.testing.assert_array_equal(coordinates, project_2d(embeddings, "pca"))


def test_tsne_keeps_each_point_next_to_its_own_cluster(
    toy: Embeddings, roles: SimpleNamespace
) -> None:
    embeddings, cluster = _clusters_only(toy, roles)
    coordinates = project_2d(embeddings, "tsne", seed=3, max_iter=250)
    assert coordinates.shape == (20, 2) and np.isfinite(coordinates).all()
    distances = np.linalg.norm(coordinates[:, None] - coordinates[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    assert np.array_equal(cluster[distances.argmin(axis=1)], cluster)


def test_tsne_of_many_points_warns_that_it_is_slow(
    toy: Embeddings, roles: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contrastive.explore.projection as projection

    embeddings, _ = _clusters_only(toy, roles)
    monkeypatch.setattr(projection, "TSNE_SLOW_ROWS", 19)
    with pytest.warns(UserWarning, match="t-SNE of 20 points takes many minutes"):
        project_2d(embeddings, "tsne", seed=3, max_iter=250)
    monkeypatch.setattr(projection, "TSNE_SLOW_ROWS", 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        project_2d(embeddings, "tsne", seed=3, max_iter=250)


def test_umap_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch, toy: Embeddings) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap now raises ImportError
    with pytest.raises(ContrastiveError, match=r"pip install contrastive\[umap\]"):
        project_2d(toy.embeddings, "umap")


def test_umap_gets_cosine_settings_and_options(
    monkeypatch: pytest.MonkeyPatch, toy: Embeddings
) -> None:
    calls: list[dict] = []

    class FakeUMAP:
        def __init__(self, **settings: object) -> None:
            calls.append(settings)

        def fit_transform(self, array: np.ndarray) -> np.ndarray:
            return array[:, :2] * 2

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    coordinates = project_2d(toy.embeddings, "umap", seed=5, min_dist=0.3)
    assert calls == [
        {
            "n_components": 2,
            "n_neighbors": 15,
            "metric": "cosine",
            "random_state": 5,
            "min_dist": 0.3,
        }
    ]
    unit = toy.embeddings / np.linalg.norm(toy.embeddings, axis=1, keepdims=True)
    np.testing.assert_allclose(coordinates, unit[:, :2] * 2, rtol=1e-6)


@pytest.mark.slow  # numba compiles UMAP on first use: about a minute on two cores
def test_real_umap_when_installed(toy: Embeddings) -> None:
    pytest.importorskip("umap")
    assert project_2d(toy.embeddings, "umap").shape == (len(toy), 2)


def test_bad_requests_are_refused(toy: Embeddings) -> None:
    with pytest.raises(ContrastiveError, match="unknown projection 'mds'"):
        project_2d(toy.embeddings, "mds")
    with pytest.raises(ContrastiveError, match="N >= 3"):
        project_2d(toy.embeddings[:2], "pca")


@pytest.mark.parametrize(
    "rows",
    [
        np.ones((5, 8)),  # identical
        np.zeros((5, 8)),  # all zero
        np.arange(1, 6)[:, None] * np.linspace(1, 2, 8)[None],  # multiples of one row
    ],
    ids=["identical", "zero", "multiples"],
)
@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embeddings_without_spread_are_refused(rows: np.ndarray, method: str) -> None:
    # t-SNE used to crash the whole process (a dead kernel) here, PCA to return zeros.
    with pytest.raises(ContrastiveError, match="no spread: all 5 rows are identical"):
        project_2d(rows, method)


def test_a_tiny_spread_still_projects() -> None:
    rng = np.random.default_rng(0)
    rows = np.ones((20, 8)) + 1e-4 * rng.normal(size=(20, 8))
    assert np.isfinite(project_2d(rows, "tsne", max_iter=250)).all()


def test_options_override_the_defaults(toy: Embeddings) -> None:
    np.testing.assert_array_equal(
        project_2d(toy.embeddings, "pca", random_state=1, svd_solver="full"),
        project_2d(toy.embeddings, "pca", seed=1, svd_solver="full"),
    )
    with pytest.raises(ContrastiveError, match="n_components=3 cannot be set"):
        project_2d(toy.embeddings, "pca", n_components=3)
    with pytest.raises(ContrastiveError, match="n_components=3 cannot be set"):
        project_2d(toy.embeddings, "tsne", n_components=3)


def test_plain_arrays_are_checked_like_embeddings(toy: Embeddings) -> None:
    bad = toy.embeddings.copy()
    bad[4, 3] = np.nan
    with pytest.raises(ContrastiveError, match="embeddings contain NaN or inf in 1 row"):
        project_2d(bad)
    with pytest.raises(ContrastiveError, match=r"must be 2-D \(rows x features\)"):
        project_2d(toy.embeddings[0])
