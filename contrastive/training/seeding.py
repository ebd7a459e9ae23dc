"""Per-step random sources, so a resumed run draws the same augmentations as an unbroken one.

Lightning restores weights, optimiser and schedule on ``--resume`` but not the global random
state. Views drawn from a generator seeded with ``(seed, global step, rank)`` depend only on
where training is, never on what ran before in the process.
"""

from __future__ import annotations

import numpy as np
import torch


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A 64-bit seed mixing the run seed, the optimiser step and the process rank.

    ``SeedSequence`` hashes its inputs, so neighbouring steps get unrelated streams.
    """
    entropy = [seed % 2**64, step, rank]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """A fresh generator on ``device`` seeded with :func:`step_seed`."""
    return torch.Generator(device=device).manual_seed(step_seed(seed, step, rank))
