"""Duplicate groups: exact and near copies within a folder, and across two folders.

Two images are linked when their files have the same bytes (an exact copy) or when their
pixel-space fingerprints are near-copies (:mod:`contrastive.data.near_copies`: the same
picture resized, re-encoded, lightly cropped or with its brightness and contrast shifted).
A *group* is a centre image and the images linked to it
(:func:`~contrastive.data.near_copies.copy_groups`), listed first to last: every member is
a copy of the first, never only a copy of a copy (look-alike photos chain into groups of
dozens of distinct pictures).

Across two folders (train/test leakage), the groups are those of both folders together
that hold images of each, and every image with a copy in the other folder is in one
(:func:`leak_groups`); the first folder's own links are reused from its search, not
searched again.

The embedding-space pair scan :func:`similar_pairs` (images the encoder finds almost
identical, whatever their pixels) is here too; ``contrastive.explore.near_duplicates``
calls it.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from contrastive.curation.space import unit_tensor
from contrastive.data.near_copies import (
    NearCopies,
    confirm_by_detail,
    copy_groups,
    detail_thumbnails,
    image_fingerprints,
    near_copy_pairs,
)
from contrastive.data.near_copy_settings import (
    DEFAULT_CANDIDATES,
    DEFAULT_THRESHOLD,
    FINGERPRINT_SIDE,
)
from contrastive.errors import ContrastiveError

#: Bytes read at a time when hashing files.
_HASH_BLOCK = 1 << 20


@dataclass
class DuplicateGroup:
    """Images linked by exact or near copies.

    Attributes:
        members: ``(M,)`` int64 image indices, ascending; the first is the one to keep.
        similarity: ``(M,)`` float32 fingerprint cosine similarity of each member to the
            first (1.0 for the first itself).
        exact: ``(M,)`` bool: the member's file has the same bytes as another member's.
    """

    members: np.ndarray
    similarity: np.ndarray
    exact: np.ndarray

    def __len__(self) -> int:
        return len(self.members)


def file_digests(paths: Sequence[str | os.PathLike], progress: bool = False) -> list[str]:
    """SHA-256 of each file's bytes; an unreadable file gets a digest of its own path.

    Args:
        paths: The files.
        progress: Show a progress bar.

    Raises:
        ContrastiveError: Never for unreadable files (they simply match nothing).
    """
    digests = []
    for path in tqdm(paths, desc="file hashes", unit="file", disable=not progress):
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                while block := handle.read(_HASH_BLOCK):
                    digest.update(block)
        except OSError:
            digest.update(b"unreadable:" + os.fsencode(path))
        digests.append(digest.hexdigest())
    return digests


def exact_copy_links(digests: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Links each file to the first file with the same digest: ``(first, second)`` indices."""
    first_seen: dict[str, int] = {}
    first, second = [], []
    for index, digest in enumerate(digests):
        original = first_seen.setdefault(digest, index)
        if original != index:
            first.append(original)
            second.append(index)
    return np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)


def duplicate_groups(
    fingerprints: Tensor,
    digests: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    candidates: int = DEFAULT_CANDIDATES,
    progress: bool = False,
    exact: bool = False,
    paths: Sequence[str | os.PathLike] | None = None,
    thumbnails: Callable[[str], Tensor | None] | None = None,
) -> list[DuplicateGroup]:
    """Groups of exact and near copies within one set of images (centre first).

    Args:
        fingerprints: ``(N, F)`` fingerprints from
            :func:`~contrastive.data.near_copies.image_fingerprints`.
        digests: ``N`` file digests (:func:`file_digests`) to link exact copies, also the
            flat images that have no fingerprint; None links near copies only.
        threshold: Fingerprint cosine similarity from which two images are near copies.
        candidates: Nearest images examined per image.
        progress: Show a progress bar where the search is large.
        exact: Search exactly at any size (approximate above
            :data:`~contrastive.neighbours.APPROXIMATE_ROWS` images otherwise).
        paths: The images' files: near copies of large images must then match in detail
            too (:func:`~contrastive.data.near_copies.confirm_by_detail`).
        thumbnails: The detail check's thumbnail cache, shared with another search over
            these files (:func:`~contrastive.data.near_copies.detail_thumbnails`).

    Returns:
        The groups of two or more images, largest first.

    Raises:
        ContrastiveError: If ``digests`` does not have one entry per fingerprint, or on a
            threshold outside ``(0, 1]``.
    """
    links = copy_links(
        fingerprints, digests, threshold, candidates, progress, exact, paths, thumbnails
    )
    return groups_from_links(links, fingerprints, digests)


def copy_links(
    fingerprints: Tensor,
    digests: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    candidates: int = DEFAULT_CANDIDATES,
    progress: bool = False,
    exact: bool = False,
    paths: Sequence[str | os.PathLike] | None = None,
    thumbnails: Callable[[str], Tensor | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The links :func:`duplicate_groups` groups: ``(first, second)`` image indices of each
    near copy (confirmed in detail where ``paths`` are given) and exact copy; the arguments
    are its own. :func:`leak_groups` reuses them rather than search the set again."""
    _check_digests(digests, fingerprints)
    pairs = near_copy_pairs(fingerprints, None, threshold, candidates, progress, exact)
    if paths is not None:
        pairs = confirm_by_detail(pairs, paths, thumbnails=thumbnails)
    return _with_exact_links(pairs, digests)


def _check_digests(digests: Sequence[str] | None, fingerprints: Tensor) -> None:
    count = fingerprints.shape[0]
    if digests is not None and len(digests) != count:
        raise ContrastiveError(f"{len(digests)} file digests for {count} fingerprints")


def _with_exact_links(
    pairs: NearCopies, digests: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    exact_first, exact_second = (
        exact_copy_links(digests) if digests is not None else (np.zeros(0, np.int64),) * 2
    )
    return (
        np.concatenate([pairs.query.numpy(), exact_first]),
        np.concatenate([pairs.reference.numpy(), exact_second]),
    )


def groups_from_links(
    links: tuple[np.ndarray, np.ndarray], fingerprints: Tensor, digests: Sequence[str] | None
) -> list[DuplicateGroup]:
    """The duplicate groups of :func:`copy_links`'s links (see :func:`duplicate_groups`)."""
    groups = copy_groups(links[0], links[1], fingerprints.shape[0])
    return [_described(members, fingerprints, digests) for members in groups]


def leak_groups(
    fingerprints: Tensor,
    digests: Sequence[str] | None,
    split: int,
    first_links: tuple[np.ndarray, np.ndarray],
    threshold: float = DEFAULT_THRESHOLD,
    candidates: int = DEFAULT_CANDIDATES,
    progress: bool = False,
    exact: bool = False,
    paths: Sequence[str | os.PathLike] | None = None,
    thumbnails: Callable[[str], Tensor | None] | None = None,
) -> list[DuplicateGroup]:
    """The duplicate groups over two sets together that hold images of both (leakage).

    The groups of :func:`duplicate_groups` over both sets, kept by :func:`cross_groups`,
    without searching the first set again: its links come from ``first_links``; the second
    set is searched within itself, and the two sets against each other both ways. Each set's
    candidates are then its own nearest images, not the nearest of both sets: every link a
    search over both sets together finds is found, and more where an image has more than
    ``candidates`` look-alikes (CIFAR-10 train against test: 3,945 links against 3,640).

    Args:
        fingerprints: ``(N + M, F)`` fingerprints of the first set, then the second.
        digests: ``N + M`` file digests, or None (near copies only).
        split: ``N``, the first set's image count.
        first_links: :func:`copy_links` of the first set, with the same settings.
        threshold: See :func:`duplicate_groups`, as the other arguments.
        candidates: Nearest images examined per image in each search.
        progress: See :func:`duplicate_groups`.
        exact: See :func:`duplicate_groups` (the search between the sets is always exact).
        paths: ``N + M`` files: near copies of large images must match in detail too.
        thumbnails: See :func:`duplicate_groups`.

    Returns:
        Groups whose member indices run over both sets (``i >= split`` is the second
        set's image ``i - split``), each holding images of both: those of the search over
        both sets, largest first, then one for each image with a copy in the other set that
        they leave out (:func:`_left_out_leaks`), so that every such image is listed.
    """
    _check_digests(digests, fingerprints)
    first, second = fingerprints[:split], fingerprints[split:]
    within = near_copy_pairs(second, None, threshold, candidates, progress, exact)
    # Both ways: an image with more copies in the other set than ``candidates`` is still
    # linked to those that have it among their nearest.
    across = near_copy_pairs(second, first, threshold, candidates, progress)
    back = near_copy_pairs(first, second, threshold, candidates, progress)
    pairs = NearCopies(
        torch.cat([within.query + split, across.query + split, back.query]),
        torch.cat([within.reference + split, across.reference, back.reference + split]),
        torch.cat([within.similarity, across.similarity, back.similarity]),
    )
    if paths is not None:
        pairs = confirm_by_detail(pairs, paths, thumbnails=thumbnails)
    new_first, new_second = _with_exact_links(pairs, digests)
    links = (
        np.concatenate([first_links[0], new_first]),
        np.concatenate([first_links[1], new_second]),
    )
    groups = cross_groups(groups_from_links(links, fingerprints, digests), split)
    across_sets = (new_first < split) != (new_second < split)
    return groups + _left_out_leaks(
        groups, new_first[across_sets], new_second[across_sets], fingerprints, digests
    )


def _left_out_leaks(
    groups: list[DuplicateGroup],
    first: np.ndarray,
    second: np.ndarray,
    fingerprints: Tensor,
    digests: Sequence[str] | None,
) -> list[DuplicateGroup]:
    """A group for each image with a copy in the other set that no leak group holds: the
    image, then its copies there.

    A group holds the images linked to its centre (:func:`copy_groups`); an image whose
    copies all went to other centres' groups stays out, which suits a list of copies to
    delete but not a leak check: curating CIFAR-10's training folder against its test
    folder, 38 of the 392 test images with a copy in the training folder, and 74 of the 648
    training images with one in the test folder, were in no leak group
    (``benchmarks/leak_search.py``). Their copies may then be listed twice.
    """
    across: dict[int, set[int]] = {}
    for one, other in zip(first.tolist(), second.tolist(), strict=True):
        across.setdefault(one, set()).add(other)
        across.setdefault(other, set()).add(one)
    listed = {int(member) for group in groups for member in group.members}
    extra = []
    for image in sorted(across):
        if image in listed:
            continue
        members = [image, *sorted(across[image])]
        listed.update(members)
        extra.append(_described(members, fingerprints, digests))
    return extra


def _described(
    members: Sequence[int], fingerprints: Tensor, digests: Sequence[str] | None
) -> DuplicateGroup:
    """A group with each member's similarity to the first and its exact-copy flag."""
    members = np.asarray(members, dtype=np.int64)
    vectors = fingerprints[torch.from_numpy(members)].float()
    similarity = (vectors @ vectors[0]).numpy().astype(np.float32)
    exact = np.zeros(len(members), dtype=bool)
    if digests is not None:
        names = [digests[int(member)] for member in members]
        exact = np.array([names.count(name) > 1 for name in names], dtype=bool)
        # The same bytes are the same picture, also for flat images (a zero fingerprint).
        similarity[np.array([name == names[0] for name in names])] = 1.0
    return DuplicateGroup(members, similarity, exact)


def cross_groups(groups: Sequence[DuplicateGroup], split: int) -> list[DuplicateGroup]:
    """The groups over two concatenated sets that hold images of both.

    Args:
        groups: Groups over ``first + second`` images (indices below ``split`` are the first).
        split: Number of images of the first set.
    """
    return [g for g in groups if (g.members < split).any() and (g.members >= split).any()]


def find_duplicates(
    paths: Sequence[str | os.PathLike],
    threshold: float = DEFAULT_THRESHOLD,
    side: int = FINGERPRINT_SIDE,
    candidates: int = DEFAULT_CANDIDATES,
    progress: bool = False,
) -> list[DuplicateGroup]:
    """Duplicate groups among image files; see :func:`duplicate_groups`."""
    fingerprints = image_fingerprints(paths, side, progress)
    return duplicate_groups(
        fingerprints, file_digests(paths), threshold, candidates, progress, paths=paths
    )


def find_cross_duplicates(
    paths: Sequence[str | os.PathLike],
    other_paths: Sequence[str | os.PathLike],
    threshold: float = DEFAULT_THRESHOLD,
    side: int = FINGERPRINT_SIDE,
    candidates: int = DEFAULT_CANDIDATES,
    progress: bool = False,
) -> list[DuplicateGroup]:
    """Duplicate groups spanning two lists of image files (leakage between two folders).

    Returns:
        Groups whose member indices run over ``paths`` then ``other_paths`` (an index
        ``i >= len(paths)`` is ``other_paths[i - len(paths)]``); each holds both.
    """
    every = [*paths, *other_paths]
    fingerprints = image_fingerprints(every, side, progress)
    digests = file_digests(every)
    split = len(paths)
    thumbnails = detail_thumbnails()
    first_links = copy_links(
        fingerprints[:split],
        digests[:split],
        threshold,
        candidates,
        progress,
        paths=paths,
        thumbnails=thumbnails,
    )
    return leak_groups(
        fingerprints,
        digests,
        split,
        first_links,
        threshold,
        candidates,
        progress,
        paths=every,
        thumbnails=thumbnails,
    )


#: Slack of the similarity threshold of :func:`similar_pairs`: float32 rounding puts the
#: cosine of two identical unit rows a few units in the last place off 1 (0.99999994 is
#: common), so ``threshold=1.0`` would otherwise miss exact copies. Far below any
#: difference between distinct embeddings that a threshold is meant to separate.
SIMILARITY_TOLERANCE = 1e-6


def similar_pairs(
    embeddings: np.ndarray,
    threshold: float = 0.98,
    max_pairs: int = 10_000,
    chunk_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows whose cosine similarity is at least ``threshold`` (a range scan).

    Runs in row chunks of the upper triangle, so no ``N x N`` matrix is held.

    Args:
        embeddings: ``(N, D)`` embeddings.
        threshold: Minimum cosine similarity, in ``[-1, 1]``, compared with a slack of
            :data:`SIMILARITY_TOLERANCE` so that ``1.0`` finds exact copies despite
            float32 rounding.
        max_pairs: At most this many pairs are kept (the most similar), with a warning,
            so a low threshold cannot exhaust memory.
        chunk_rows: Rows per chunk; by default a chunk's block stays under 2^24 floats.

    Returns:
        ``(pairs, similarities)``: ``(M, 2)`` int64 row pairs with ``i < j`` and ``(M,)``
        float32 similarities, most similar first.

    Raises:
        ContrastiveError: On a threshold outside ``[-1, 1]`` or ``max_pairs < 1``.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ContrastiveError(f"threshold must be a cosine similarity in [-1, 1], got {threshold}")
    if max_pairs < 1:
        raise ContrastiveError(f"max_pairs must be at least 1, got {max_pairs}")
    unit = unit_tensor(embeddings).numpy()
    count = len(unit)
    rows_per_chunk = chunk_rows or max(1, (1 << 24) // max(count, 1))
    pairs = np.empty((0, 2), dtype=np.int64)
    sims = np.empty(0, dtype=np.float32)
    dropped = False
    for start in range(0, count, rows_per_chunk):
        rows = slice(start, min(start + rows_per_chunk, count))
        # Only the upper triangle: keys from the chunk's first row on, columns past the row.
        block = unit[rows] @ unit[start:].T
        local_rows, local_cols = np.nonzero(block >= threshold - SIMILARITY_TOLERANCE)
        upper = local_cols > local_rows
        local_rows, local_cols = local_rows[upper], local_cols[upper]
        found = np.stack([local_rows + start, local_cols + start], axis=1)
        pairs = np.concatenate([pairs, found])
        sims = np.concatenate([sims, block[local_rows, local_cols]])
        if len(sims) > max_pairs:
            keep = np.argpartition(-sims, max_pairs - 1)[:max_pairs]
            pairs, sims, dropped = pairs[keep], sims[keep], True
    if dropped:
        warnings.warn(
            f"more than {max_pairs} pairs reach similarity {threshold}; kept the "
            f"{max_pairs} most similar (raise threshold or max_pairs)",
            stacklevel=3,
        )
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -sims))
    return pairs[order], sims[order]
