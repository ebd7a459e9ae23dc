"""Exact against approximate neighbour search of a folder against itself (curation at scale).

Curation compares every image with every other (near copies on pixel fingerprints,
outliers on embeddings); :func:`contrastive.neighbours.top_k_within` does that exactly up to
``APPROXIMATE_ROWS`` images and through inverted lists above. This script measures both on
the fingerprints of a real folder, in one process on one machine:

* at the folder's size, both searches forced: the time of each, the share of the exact
  near-copy pairs (fingerprint cosine >= 0.92) the approximate one finds, how often each
  image's nearest image is the same, and how many of the 500 lowest mean similarities to
  the 10 nearest (the outlier list) are the same;
* at ``--scale`` times the folder (noisy copies of its fingerprints, so every image has
  near neighbours, as in a folder of bursts), the approximate search's time and the
  exact search's time extrapolated from ``--exact-queries`` queries against every row.

Example (CIFAR-10's 50,000 training images, then 255,000 rows)::

    python benchmarks/neighbour_search.py --data ~/.cache/contrastive/cifar10/train
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import contrastive.neighbours as neighbours
from contrastive.data.folder import ImageFolder
from contrastive.data.near_copies import image_fingerprints, near_copy_pairs
from contrastive.data.near_copy_settings import DEFAULT_THRESHOLD

K = 10
OUTLIERS = 500


def _timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def _pairs(rows: torch.Tensor) -> set[tuple[int, int]]:
    pairs = near_copy_pairs(rows, None, DEFAULT_THRESHOLD)
    return set(zip(pairs.query.tolist(), pairs.reference.tolist()))


def compare_at_folder_size(rows: torch.Tensor) -> dict:
    """Both searches on the same rows: times and agreement."""
    count = len(rows)
    exact, exact_seconds = _timed(
        neighbours.top_k, rows, rows, K, exclude=torch.arange(count), ordered=False
    )
    exact_pairs = _pairs(rows)
    saved = neighbours.APPROXIMATE_ROWS
    neighbours.APPROXIMATE_ROWS = 0  # force the inverted lists at this size
    try:
        approximate, approximate_seconds = _timed(neighbours.top_k_within, rows, K)
        approximate_pairs = _pairs(rows)
    finally:
        neighbours.APPROXIMATE_ROWS = saved
    exact_nearest = exact[0].gather(1, exact[1].argmax(1, keepdim=True))[:, 0]
    lowest_exact = set(np.argsort(exact[1].mean(1).numpy())[:OUTLIERS].tolist())
    lowest_approximate = set(np.argsort(approximate[1].mean(1).numpy())[:OUTLIERS].tolist())
    return {
        "rows": count,
        "lists": max(2, int(np.sqrt(count))),
        "probed_lists": neighbours.PROBED_LISTS,
        "exact_seconds": round(exact_seconds, 1),
        "approximate_seconds": round(approximate_seconds, 1),
        "near_copy_pairs": len(exact_pairs),
        "near_copy_pairs_found": len(exact_pairs & approximate_pairs),
        "near_copy_pairs_extra": len(approximate_pairs - exact_pairs),
        "same_nearest": round(float((approximate[0][:, 0] == exact_nearest).float().mean()), 4),
        "same_lowest_500": len(lowest_exact & lowest_approximate),
    }


def time_at_scale(rows: torch.Tensor, scale: int, exact_queries: int, seed: int) -> dict:
    """The approximate search on ``scale`` noisy copies of the rows; exact extrapolated."""
    generator = torch.Generator().manual_seed(seed)
    copies = [rows] + [
        F.normalize(rows + 0.02 * torch.randn(rows.shape, generator=generator), dim=1)
        for _ in range(scale - 1)
    ]
    big = torch.cat(copies)
    _, approximate_seconds = _timed(neighbours.top_k_within, big, K)
    queries = big[:exact_queries]
    _, slice_seconds = _timed(
        neighbours.top_k, queries, big, K, exclude=torch.arange(exact_queries), ordered=False
    )
    return {
        "rows": len(big),
        "approximate_seconds": round(approximate_seconds, 1),
        "exact_seconds_extrapolated": round(slice_seconds * len(big) / exact_queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="image folder")
    parser.add_argument("--scale", type=int, default=5, help="copies of the rows for timing")
    parser.add_argument("--exact-queries", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = ImageFolder.scan(args.data).paths
    rows, fingerprint_seconds = _timed(image_fingerprints, paths)
    result = {
        "data": str(args.data),
        "threads": torch.get_num_threads(),
        "fingerprint_seconds": round(fingerprint_seconds, 1),
        "folder": compare_at_folder_size(rows),
        "scaled": time_at_scale(rows, args.scale, args.exact_queries, args.seed),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
