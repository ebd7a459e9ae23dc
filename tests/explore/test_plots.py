"""Figures of real CIFAR images: the thumbnail map, neighbour, pair, outlier and cluster
grids. Each test saves its figure to ``test-artifacts/explore`` for a human to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox
from sklearn.metrics import adjusted_rand_score

from contrastive.errors import ContrastiveError
from contrastive.explore import (
    Embeddings,
    cluster_embeddings,
    load_thumbnail,
    near_duplicates,
    nearest_neighbours,
    outliers,
    plot_clusters,
    plot_images,
    plot_neighbours,
    plot_pairs,
    plot_projection,
    project_2d,
    save_figure,
)
from contrastive.explore.images import OTHER_CLASS_COLOUR, SAME_CLASS_COLOUR, class_palette
from contrastive.explore.maps import spread_subsample


def _image_axes(figure: Figure) -> list:
    return [ax for ax in figure.axes if ax.images]


def test_spread_subsample_takes_one_point_per_clump() -> None:
    rng = np.random.default_rng(0)
    clumps = np.concatenate([rng.normal(0, 0.001, (50, 2)), rng.normal(1, 0.001, (50, 2))])
    chosen = spread_subsample(clumps, count=10)
    assert len(chosen) == 2 and chosen[0] < 50 <= chosen[1]


def test_spread_subsample_keeps_every_point_of_a_sparse_lattice() -> None:
    lattice = np.stack(np.meshgrid(np.arange(10), np.arange(10)), axis=-1).reshape(-1, 2)
    assert spread_subsample(lattice.astype(float), count=100).tolist() == list(range(100))
    assert len(spread_subsample(lattice.astype(float), count=30)) == 30
    assert len(spread_subsample(lattice.astype(float), count=0)) == 0


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection_map_draws_framed_thumbnails(
    cifar_set: Embeddings, artifacts: Path, method: str
) -> None:
    coordinates = project_2d(cifar_set.embeddings, method)
    figure = plot_projection(cifar_set, coordinates, max_thumbnails=40, title=method)
    save_figure(figure, artifacts / f"map_{method}.png")
    ax = figure.axes[0]
    boxes = [artist for artist in ax.artists if isinstance(artist, AnnotationBbox)]
    expected = spread_subsample(coordinates, 40)
    assert len(boxes) == len(expected) > 10
    palette = class_palette(10)
    for box, index in zip(boxes, expected):
        np.testing.assert_allclose(box.xybox, coordinates[index])
        np.testing.assert_allclose(box.patch.get_edgecolor(), palette[cifar_set.labels[index]])
        assert box.offsetbox.get_data().shape == (32, 32, 3)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == cifar_set.classes.tolist()


def test_points_only_map_needs_no_images(cifar_set: Embeddings) -> None:
    no_images = Embeddings(
        cifar_set.embeddings, cifar_set.paths, cifar_set.labels, cifar_set.classes
    )
    figure = plot_projection(no_images, project_2d(no_images.embeddings), max_thumbnails=0)
    assert not figure.axes[0].artists
    with pytest.raises(ContrastiveError, match="no data_root"):
        plot_projection(no_images, project_2d(no_images.embeddings), max_thumbnails=5)
    with pytest.raises(ContrastiveError, match="coordinates must have shape"):
        plot_projection(no_images, np.zeros((3, 2)))


def test_neighbour_grid_shows_query_then_ranked_neighbours(
    cifar_set: Embeddings, artifacts: Path
) -> None:
    queries = [0, 35, 52, 90]
    figure = plot_neighbours(cifar_set, queries, k=6)
    save_figure(figure, artifacts / "neighbours.png")
    grid = np.array(_image_axes(figure)).reshape(4, 7)
    indices, sims = nearest_neighbours(cifar_set.embeddings, 6, queries)
    for row, query in enumerate(queries):
        assert grid[row, 0].get_title() == f"query #{query}\n{cifar_set.label_name(query)}"
        np.testing.assert_array_equal(
            grid[row, 0].images[0].get_array(), load_thumbnail(cifar_set.image_path(query), 64)
        )
        for col in range(6):
            neighbour = indices[row, col]
            title = grid[row, col + 1].title
            assert title.get_text() == (f"{sims[row, col]:.3f}\n{cifar_set.label_name(neighbour)}")
            same = cifar_set.labels[neighbour] == cifar_set.labels[query]
            assert title.get_color() == (SAME_CLASS_COLOUR if same else OTHER_CLASS_COLOUR)
    # Image 1 is an exact copy of image 0's embedding.
    assert grid[0, 1].get_title() == f"1.000\n{cifar_set.label_name(1)}"


def test_duplicate_pairs_and_outliers_grids(cifar_set: Embeddings, artifacts: Path) -> None:
    pairs, sims = near_duplicates(cifar_set.embeddings, threshold=0.999)
    assert pairs.tolist() == [[0, 1]]
    figure = plot_pairs(cifar_set, pairs, sims)
    save_figure(figure, artifacts / "duplicates.png")
    assert "sim 1.0000" in _image_axes(figure)[0].get_title()
    with pytest.raises(ContrastiveError, match="no pairs"):
        plot_pairs(cifar_set, pairs[:0], sims[:0])

    indices, scores = outliers(cifar_set.embeddings, k=5, count=6)
    figure = plot_images(cifar_set, indices, [f"{s:.2f}" for s in scores], cols=6)
    save_figure(figure, artifacts / "outliers.png")
    assert [ax.get_title() for ax in _image_axes(figure)] == [f"{s:.2f}" for s in scores]


def test_clusters_recover_the_classes_and_grid_has_one_row_each(
    cifar_set: Embeddings, artifacts: Path
) -> None:
    clustering = cluster_embeddings(cifar_set.embeddings, n_clusters=10)
    assert adjusted_rand_score(cifar_set.labels, clustering.assignments) > 0.6
    assert clustering.sizes.sum() == len(cifar_set)
    figure = plot_clusters(cifar_set, clustering.assignments, per_cluster=6, pick="central")
    save_figure(figure, artifacts / "clusters.png")
    titles = [ax.get_title(loc="left") for ax in figure.axes if ax.get_title(loc="left")]
    assert len(titles) == 10 and all(t.startswith("cluster ") for t in titles)
    sizes = [int(t.split(": ")[1].split(" ")[0]) for t in titles]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == len(cifar_set)


def test_cluster_grid_of_known_toy_clusters(toy: Embeddings) -> None:
    rows = list(range(20))
    clustering = cluster_embeddings(toy.embeddings[rows], n_clusters=2)
    assert len(set(clustering.assignments[:10])) == 1
    assert len(set(clustering.assignments[10:])) == 1
    assert clustering.assignments[0] != clustering.assignments[10]
    with pytest.raises(ContrastiveError, match="n_clusters must be between 1 and 20"):
        cluster_embeddings(toy.embeddings[rows], n_clusters=21)
    with pytest.raises(ContrastiveError, match="unknown pick"):
        plot_clusters(toy, np.zeros(len(toy), dtype=int), pick="best")


def test_save_figure_is_atomic_and_checks_the_format(tmp_path: Path) -> None:
    figure = Figure()
    figure.subplots().plot([0, 1])
    target = save_figure(figure, tmp_path / "plot.png")
    assert target.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
    with pytest.raises(ContrastiveError, match="plot.xyz"):
        save_figure(figure, tmp_path / "plot.xyz")


def test_grids_take_a_mask_and_refuse_what_is_not_a_row(cifar_set: Embeddings) -> None:
    mask = cifar_set.labels == 2
    rows = np.flatnonzero(mask)
    titles = [ax.get_title() for ax in _image_axes(plot_images(cifar_set, mask))]
    assert titles == [f"#{row}\n{cifar_set.label_name(row)}" for row in rows]
    queries = _image_axes(plot_neighbours(cifar_set, mask, k=2))[::3]
    assert [ax.get_title().split("\n")[0] for ax in queries] == [f"query #{row}" for row in rows]
    with pytest.raises(ContrastiveError, match="boolean mask of 99 entries"):
        plot_images(cifar_set, np.ones(99, dtype=bool))
    with pytest.raises(ContrastiveError, match="index -1, outside"):
        plot_images(cifar_set, [-1])
    with pytest.raises(ContrastiveError, match="index 100, outside the rows 0..99"):
        plot_images(cifar_set, [len(cifar_set)])
    with pytest.raises(ContrastiveError, match="query_indices must be integer.*2.7"):
        plot_neighbours(cifar_set, [2.7])
    with pytest.raises(ContrastiveError, match="pairs holds index -1"):
        plot_pairs(cifar_set, [[0, -1]], [0.5])
    with pytest.raises(ContrastiveError, match="similarities has 1 values for 2 pairs"):
        plot_pairs(cifar_set, [[0, 1], [2, 3]], [0.5])


def test_bad_plot_settings_are_refused(cifar_set: Embeddings) -> None:
    with pytest.raises(ContrastiveError, match="per_cluster must be at least 1, got 0"):
        plot_clusters(cifar_set, np.zeros(len(cifar_set), dtype=int), per_cluster=0)
    coordinates = project_2d(cifar_set.embeddings)
    with pytest.raises(ContrastiveError, match="thumbnail_size must be at least 1 pixel, got 0"):
        plot_projection(cifar_set, coordinates, thumbnail_size=0)
    coordinates[3] = np.nan
    with pytest.raises(ContrastiveError, match="coordinates contain NaN or inf in 1 row.*row 3"):
        plot_projection(cifar_set, coordinates)
    with pytest.raises(ContrastiveError, match="coordinates contain NaN"):
        spread_subsample(coordinates, 10)
    with pytest.raises(ContrastiveError, match="embeddings contain NaN"):
        cluster_embeddings(coordinates, 2)
