"""Fixtures for the exploration tests: a toy set with known structure, a real-photo set."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

from contrastive.data.folder import ImageFolder
from contrastive.explore import Embeddings

matplotlib.use("Agg")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "explore"

# Toy set rows with known roles (see ``toy``).
CLUSTER_A = list(range(10))
CLUSTER_B = list(range(10, 20))
DUPLICATE_OF_0 = 20
OUTLIER = 21
MISLABELLED = 22


def toy_embeddings(seed: int = 0) -> np.ndarray:
    """``(23, 8)``: two tight clusters along e0 and e1, a copy of row 0, an outlier along e7
    and one more e0 point (labelled as class 1 by ``toy``)."""
    rng = np.random.default_rng(seed)
    eye = np.eye(8, dtype=np.float32)
    rows = [eye[0] + 0.15 * rng.standard_normal(8) for _ in CLUSTER_A]
    rows += [eye[1] + 0.15 * rng.standard_normal(8) for _ in CLUSTER_B]
    rows += [rows[0].copy(), eye[7], eye[0] + 0.15 * rng.standard_normal(8)]
    return np.stack(rows).astype(np.float32)


@pytest.fixture
def roles() -> SimpleNamespace:
    """The rows of ``toy`` by role (test modules cannot import conftest constants)."""
    return SimpleNamespace(
        cluster_a=CLUSTER_A,
        cluster_b=CLUSTER_B,
        duplicate_of_0=DUPLICATE_OF_0,
        outlier=OUTLIER,
        mislabelled=MISLABELLED,
    )


@pytest.fixture
def toy() -> Embeddings:
    """Labels: A = 0, B = 1, the duplicate 0, the outlier unlabeled, the last one 1."""
    labels = np.array([0] * 10 + [1] * 10 + [0, -1, 1], dtype=np.int64)
    paths = [f"toy/{i:02d}.jpg" for i in range(len(labels))]
    return Embeddings(toy_embeddings(), paths, labels, ["a", "b"])


@pytest.fixture(scope="session")
def cifar_set(cifar10_small: dict[str, Path]) -> Embeddings:
    """The 100 small-set test images (10 per class) with structured fake embeddings.

    Each image sits near its class's axis; class 5 leans towards class 3 and class 9
    towards class 1 (on CIFAR-10: dogs towards cats, trucks towards automobiles), so the
    confusion matrix has something to show; image 1 is an exact duplicate of image 0.
    """
    folder = ImageFolder.scan(cifar10_small["test"])
    labels, classes = folder.labels()
    rng = np.random.default_rng(1)
    axes = np.eye(16, dtype=np.float32)
    centres = axes[:10].copy()
    for leaning, towards in ((5, 3), (9, 1)):
        centres[leaning] = 0.6 * axes[towards] + 0.8 * axes[leaning]
    embeddings = centres[labels] + 0.3 * rng.standard_normal((len(labels), 16))
    embeddings[1] = embeddings[0]
    return Embeddings(
        embeddings.astype(np.float32),
        folder.relative_paths(),
        labels,
        classes,
        data_root=folder.root,
    )


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/explore`` in the repository root, for figures to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
