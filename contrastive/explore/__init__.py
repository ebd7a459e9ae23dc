"""Exploring embeddings in notebooks: maps, neighbours, clusters, duplicates, outliers.

Load a file written by ``contrastive embed`` with :func:`load_embeddings` (re-exported here
from :mod:`contrastive.embeddings`, the home of the :class:`Embeddings` type), then call the
functions below; every plot returns a :class:`matplotlib.figure.Figure` (save it with
:func:`save_figure`). Modules:

* :mod:`~contrastive.explore.similarity`: chunked cosine neighbours, duplicates, outliers
  (the last two from :mod:`contrastive.curation`, their home).
* :mod:`~contrastive.explore.projection`: PCA, t-SNE and UMAP projections to 2-D.
* :mod:`~contrastive.explore.maps`: the projection scatter with thumbnails.
* :mod:`~contrastive.explore.grids`: neighbour grids, pair grids, image grids.
* :mod:`~contrastive.explore.clusters`: k-means and a sample grid per cluster.
* :mod:`~contrastive.explore.knn`: per-class kNN accuracy and the confusion matrix.
* :mod:`~contrastive.explore.augment`: a preview of the views a ViewConfig makes.
* :mod:`~contrastive.explore.browser`: the ipywidgets neighbour browser.
* :mod:`~contrastive.explore.comparison`: a bar chart of encoders against baselines.
* :mod:`~contrastive.explore.projector`: the TensorBoard Embedding Projector export.
"""

from contrastive.embeddings import Embeddings, load_embeddings
from contrastive.explore.augment import plot_augmentations, sample_views
from contrastive.explore.browser import neighbour_browser
from contrastive.explore.clusters import Clustering, cluster_embeddings, plot_clusters
from contrastive.explore.comparison import plot_comparison
from contrastive.explore.grids import plot_images, plot_neighbours, plot_pairs
from contrastive.explore.images import load_thumbnail
from contrastive.explore.knn import KnnReport, knn_report, plot_confusion
from contrastive.explore.maps import plot_projection
from contrastive.explore.projection import PROJECTIONS, project_2d
from contrastive.explore.projector import ProjectorExport, export_projector
from contrastive.explore.similarity import (
    near_duplicates,
    nearest_neighbours,
    outliers,
    top_k_similar,
)
from contrastive.files import save_figure

__all__ = [
    "PROJECTIONS",
    "Clustering",
    "Embeddings",
    "KnnReport",
    "ProjectorExport",
    "cluster_embeddings",
    "export_projector",
    "knn_report",
    "load_embeddings",
    "load_thumbnail",
    "near_duplicates",
    "nearest_neighbours",
    "neighbour_browser",
    "outliers",
    "plot_augmentations",
    "plot_clusters",
    "plot_comparison",
    "plot_confusion",
    "plot_images",
    "plot_neighbours",
    "plot_pairs",
    "plot_projection",
    "project_2d",
    "sample_views",
    "save_figure",
    "top_k_similar",
]
