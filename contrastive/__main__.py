"""``python -m contrastive`` is the same as the ``contrastive`` command."""

import sys

from contrastive.cli import main

sys.exit(main())
