"""Near-copies in pixel space: the same picture resized, re-encoded or slightly cropped.

Encoder-independent by design (a leak check must not depend on the encoder under test, and
curation wants duplicates before any training). Each image becomes a *fingerprint*: its
RGB version area-downsampled to ``side x side`` pixels, each channel minus its mean, all
three divided by their norm. Two images are near-copies when the cosine similarity of their
fingerprints is at least ``threshold``. Downsampling removes what resizing and JPEG
re-encoding change (high frequencies); the means and norm remove brightness, contrast and
white-balance shifts; a crop of a few percent moves content by a fraction of a fingerprint
pixel. The colour matters on photos: a grayscale fingerprint matched distinct flower
photos of similar layout (a white daisy and a yellow dandelion at 0.936), and on planted
CIFAR-10 copies the colour fingerprint keeps the recall (0.79) at 0.91 precision instead of
0.79 (``benchmarks/README.md``). Neighbours come from
:func:`contrastive.neighbours.top_k_within`: exact up to 100,000 images
(seconds to minutes), approximate above (inverted lists; 255,000 images in under a minute).

This is the idea of the ciFAIR study (Barz & Denzler, "Do we train on test data? Purging
CIFAR of near-duplicates", 2020), which found 3.3% of CIFAR-10's test images to have a
near-duplicate in its training set, with a pixel-space rather than a learned metric.

Flat images (a single colour, or nearly: a clear sky) have no reliable fingerprint
direction; they match nothing. Heavy JPEG re-encoding of such images changes them more
than their content.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
from PIL import Image, ImageStat
from torch import Tensor
from tqdm.auto import tqdm

from contrastive.data.folder import load_rgb
from contrastive.errors import ContrastiveError
from contrastive.neighbours import top_k, top_k_within

#: Fingerprint side in pixels: coarse enough to ignore resizing and JPEG artefacts.
FINGERPRINT_SIDE = 12

#: Cosine similarity of fingerprints from which two images count as near-copies. Planted
#: copies of photo crops score 0.99-1.0 (resized, JPEG quality 20) and 0.94-0.96 (5% crop);
#: distinct crops of the same two photos score at most 0.77.
DEFAULT_THRESHOLD = 0.92

#: Images whose fingerprint thumbnail varies less than this (gray levels, standard
#: deviation) count as flat: their normalised shape would be JPEG noise, so they match nothing.
FLAT_STD = 2.0
#: An image whose every channel varies by less than this standard deviation over the whole
#: image (0-255 levels) is blank: one colour (a lens cap, an empty scan, a placeholder), with
#: nothing to learn from. The least varied of the 50,000 CIFAR-10 training images has 9.2.
BLANK_STD = 2.0

#: Candidates examined per image; more near-copies of one image than this are not all listed.
DEFAULT_CANDIDATES = 10


@dataclass
class NearCopies:
    """Near-copy pairs between a query set and a reference set (or within one set).

    Attributes:
        query: ``(P,)`` int64 indices into the query images.
        reference: ``(P,)`` int64 indices into the reference images (the query images
            themselves for a search within one set, where ``query < reference``).
        similarity: ``(P,)`` float32 fingerprint cosine similarities.
    """

    query: Tensor
    reference: Tensor
    similarity: Tensor

    def __len__(self) -> int:
        return int(self.query.numel())

    def queries_with_copies(self, count: int) -> Tensor:
        """``(count,)`` bool mask of the query images that have at least one near-copy."""
        mask = torch.zeros(count, dtype=torch.bool)
        mask[self.query] = True
        return mask


def fingerprint(image: Image.Image, side: int = FINGERPRINT_SIDE) -> np.ndarray:
    """The ``3 * side * side`` fingerprint of an image (float32, unit norm).

    The RGB thumbnail, each channel minus its mean, divided by the norm of all three: a
    channel weighs by its own contrast, so a nearly flat channel adds little noise, a
    shift of each channel's gain and offset (white balance, brightness) changes little, and
    pictures alike only in brightness (a white and a yellow flower) differ in their blue.
    A gray image gives three equal channels: the grayscale thumbnail's cosines.

    A flat image (thumbnail standard deviation under :data:`FLAT_STD`) gives the zero vector.
    """
    rgb = image.convert("RGB")
    if hasattr(rgb, "reduce") and min(rgb.size) >= 4 * side:
        # A cheap integer pre-shrink before the exact area resize.
        rgb = rgb.reduce(max(1, min(rgb.size) // (2 * side)))
    small = np.asarray(rgb.resize((side, side), Image.Resampling.BOX), dtype=np.float32)
    channels = small.reshape(side * side, 3).T
    channels = (channels - channels.mean(axis=1, keepdims=True)).reshape(-1)
    norm = float(np.linalg.norm(channels))
    return channels / norm if norm > FLAT_STD * side * np.sqrt(3) else np.zeros_like(channels)


def image_fingerprints(
    paths: Sequence[str | os.PathLike],
    side: int = FINGERPRINT_SIDE,
    progress: bool = False,
) -> Tensor:
    """Fingerprints ``(N, 3 * side * side)`` of image files; unreadable ones get zeros.

    Args:
        paths: Image files.
        side: Fingerprint side in pixels.
        progress: Show a progress bar.
    """
    return _read_fingerprints(paths, side, progress, spreads=False)[0]


def fingerprints_and_spreads(
    paths: Sequence[str | os.PathLike],
    side: int = FINGERPRINT_SIDE,
    progress: bool = False,
) -> tuple[Tensor, np.ndarray]:
    """Fingerprints (:func:`image_fingerprints`) and each image's pixel spread, from one
    decode of each file.

    Returns:
        ``(fingerprints (N, 3 * side * side), spreads (N,))``: the spread is the largest
        standard deviation of one channel over the whole image, in 0-255 levels (NaN for
        an unreadable file); under :data:`BLANK_STD` the image is blank.
    """
    return _read_fingerprints(paths, side, progress, spreads=True)


def _read_fingerprints(
    paths: Sequence[str | os.PathLike], side: int, progress: bool, spreads: bool
) -> tuple[Tensor, np.ndarray]:
    """Fingerprints, and the pixel spreads only where asked: on a 12 MP photo the spread
    adds 19 ms to a 177 ms decode, for nothing in the leak check."""
    rows = np.zeros((len(paths), 3 * side * side), dtype=np.float32)
    spread = np.full(len(paths) if spreads else 0, np.nan)
    for row, path in enumerate(tqdm(paths, desc="fingerprints", disable=not progress)):
        try:
            # Transparency becomes the picture's own mean colour, which the fingerprint's
            # centring removes: on white, half-transparent pictures of 5 classes (product
            # cut-outs, logos) all matched by their shared white half, at 0.92-0.99.
            image = load_rgb(path, background="opaque_mean")
            rows[row] = fingerprint(image, side)
            if spreads:
                spread[row] = max(ImageStat.Stat(image).stddev)
        except Exception:  # noqa: BLE001 - an unreadable file simply matches nothing
            continue
    return torch.from_numpy(rows), spread


def near_copy_pairs(
    queries: Tensor,
    references: Tensor | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    candidates: int = DEFAULT_CANDIDATES,
    progress: bool = False,
    exact: bool = False,
) -> NearCopies:
    """Near-copy pairs between two fingerprint sets, or within one.

    Args:
        queries: ``(Q, F)`` fingerprints (see :func:`image_fingerprints`).
        references: ``(R, F)`` fingerprints; ``None`` searches within ``queries`` (each pair
            once, ``query < reference``, an image never pairs with itself).
        threshold: Minimum fingerprint cosine similarity, in ``(0, 1]``.
        candidates: Nearest references examined per query.
        progress: Show a progress bar where the search is large.
        exact: Search within one set exactly at any size (see
            :func:`~contrastive.neighbours.top_k_within`; a search between two sets is
            always exact).

    Returns:
        The pairs, sorted by query index, then similarity descending.

    Raises:
        ContrastiveError: On a threshold outside ``(0, 1]`` or mismatched widths.
    """
    if not 0 < threshold <= 1:
        raise ContrastiveError(f"near-copy threshold must be in (0, 1], got {threshold}")
    within = references is None
    keys = queries if within else references
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ContrastiveError("near-copy fingerprints must be 2-D with the same width")
    available = keys.shape[0] - (1 if within else 0)
    empty = NearCopies(
        torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0)
    )
    if queries.shape[0] == 0 or available < 1:
        return empty
    k = min(candidates, available)
    label = "near-copy search" if progress else None
    if within:
        indices, scores = top_k_within(queries.float(), k, progress=label, exact=exact)
    else:
        indices, scores = top_k(queries.float(), keys.float(), k, progress=label)
    rows, columns = torch.nonzero(scores >= threshold - 1e-6, as_tuple=True)
    query, reference, similarity = rows, indices[rows, columns], scores[rows, columns]
    if within:
        # Each unordered pair once, from its smaller index.
        first, second = torch.minimum(query, reference), torch.maximum(query, reference)
        unique, position = np.unique(
            torch.stack([first, second], 1).numpy(), axis=0, return_index=True
        )
        query = torch.from_numpy(unique[:, 0]).long()
        reference = torch.from_numpy(unique[:, 1]).long()
        similarity = similarity[torch.from_numpy(position)]
    return NearCopies(query, reference, similarity.float())


def near_copy_groups(pairs: NearCopies, count: int) -> list[list[int]]:
    """Groups of images linked by near-copy pairs within one set (see :func:`copy_groups`).

    Args:
        pairs: Pairs from a search within one set of ``count`` images.
        count: Images in the set.

    Returns:
        Index lists of the groups with two or more images, largest first; each starts with
        its centre, the others follow in index order.
    """
    return copy_groups(pairs.query.numpy(), pairs.reference.numpy(), count)


def copy_groups(first: np.ndarray, second: np.ndarray, count: int) -> list[list[int]]:
    """Groups of copies: each a centre and images linked to the centre itself.

    Not connected components: on photos, pairs of look-alikes chain into one component of
    dozens of distinct pictures (35 flower photos of four kinds in one group, members at
    fingerprint cosine 0.77 to its first, on 3,412 flower photos), and a user cleaning
    from such a list deletes good images. Here the image with the most links (the lowest
    index among equals) is a centre, with its still ungrouped linked images; then the next.
    Every member is linked to its group's centre, so a chain ``a ~ b ~ c ~ d ~ e`` gives
    ``b, a, c`` and ``d, e``; an image whose links all went to other groups stays out.

    Args:
        first: ``(P,)`` node indices.
        second: ``(P,)`` node indices (an edge links ``first[i]`` and ``second[i]``).
        count: Number of nodes.

    Returns:
        Index lists of the groups with two or more nodes, centre first and the others in
        index order, largest group first, then by centre.
    """
    first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    links = scipy.sparse.coo_matrix(
        (np.ones(2 * len(first)), (np.r_[first, second], np.r_[second, first])),
        shape=(count, count),
    ).tocsr()
    links.sum_duplicates()
    links.setdiag(0)
    links.eliminate_zeros()
    degrees = np.diff(links.indptr)
    grouped = np.zeros(count, dtype=bool)
    groups = []
    for centre in np.lexsort((np.arange(count), -degrees)).tolist():
        if degrees[centre] == 0:
            break  # the order puts every linked node first
        if grouped[centre]:
            continue
        linked = links.indices[links.indptr[centre] : links.indptr[centre + 1]]
        members = np.sort(linked[~grouped[linked]])
        if len(members) == 0:
            continue
        grouped[centre] = True
        grouped[members] = True
        groups.append([centre, *members.tolist()])
    return sorted(groups, key=lambda group: (-len(group), group[0]))


def find_near_copies(
    query_paths: Sequence[str | os.PathLike],
    reference_paths: Sequence[str | os.PathLike] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    side: int = FINGERPRINT_SIDE,
    candidates: int = DEFAULT_CANDIDATES,
    progress: bool = False,
) -> NearCopies:
    """Near-copies between two lists of image files, or within one; see :func:`near_copy_pairs`."""
    queries = image_fingerprints(query_paths, side, progress)
    references = (
        None if reference_paths is None else image_fingerprints(reference_paths, side, progress)
    )
    return near_copy_pairs(queries, references, threshold, candidates)
