"""Which files are images, and which folders are runs: what a folder scan reads and skips.

A module of its own, without torch or PIL, so that reading a label table (a command-line
argument) does not import them.
"""

from __future__ import annotations

#: Extensions read as images. An animated GIF or multi-page TIFF is read as its first frame.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})

#: File every training run writes in its run folder; scans pass over folders holding it.
RUN_MARKER = ".contrastive-run"
