"""The toolkit's cache root, where extracted data, decoded caches, demo runs and notebooks go."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that moves the cache root.
CACHE_ENV = "CONTRASTIVE_CACHE"


def cache_dir() -> Path:
    """The toolkit's cache root: ``$CONTRASTIVE_CACHE`` or ``~/.cache/contrastive``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "contrastive"))
