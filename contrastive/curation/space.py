"""The embedding space curation works in: centred, unit-length rows compared by cosine.

Backbone features (pooled ReLU outputs) share a large common direction that makes every
pair look similar, above all after a short run; centring removes it before the rows are
scaled to unit length.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastive.neighbours import check_rows


def unit_tensor(embeddings: np.ndarray | Tensor) -> Tensor:
    """``(N, D)`` float32 tensor with unit rows (zero rows stay zero): dot = cosine.

    Raises:
        ContrastiveError: If ``embeddings`` is not 2-D or a row holds NaN or inf (it would
            rank anywhere in every search, silently).
    """
    tensor = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    check_rows(tensor, "embeddings")
    return F.normalize(tensor, dim=1)


def centred(embeddings: np.ndarray) -> np.ndarray:
    """``(N, D)`` float32 embeddings minus their mean row."""
    array = np.asarray(embeddings, dtype=np.float32)
    return array - array.mean(axis=0, keepdims=True)
