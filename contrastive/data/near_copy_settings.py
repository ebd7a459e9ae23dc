"""The near-copy search's settings (:mod:`contrastive.data.near_copies`), free of torch.

``contrastive curate`` and ``contrastive eval fewshot`` show the threshold as a flag's
default: kept apart from the search, their ``--help`` answers without loading torch.
"""

from __future__ import annotations

#: Fingerprint side in pixels: coarse enough to ignore resizing and JPEG artefacts.
FINGERPRINT_SIDE = 12

#: Cosine similarity of fingerprints from which two images count as near-copies. Planted
#: copies of photo crops score 0.99-1.0 (resized, JPEG quality 20) and 0.94-0.96 (5% crop);
#: distinct crops of the same two photos score at most 0.77.
DEFAULT_THRESHOLD = 0.92

#: Candidates examined per image; more near-copies of one image than this are not all listed.
DEFAULT_CANDIDATES = 10
