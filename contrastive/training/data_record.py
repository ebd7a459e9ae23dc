"""``RUN_DIR/data_files.json.gz``: the images a run trains on, so ``--resume`` notices a change.

A checkpoint's loader position (epoch, batch) and its steps per epoch refer to the file list
it was trained on; a folder whose files were added or removed since then trains on another
data set. The record holds the image count, a hash of the sorted file list and the list
itself, each path relative to the data folder: a folder that moved (``--resume --data NEW``)
is the same data. The decoded cache's list hash is of absolute paths, so a moved folder
would read as changed: it is not reused.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

from contrastive.data.folder import relative_key
from contrastive.files import atomic_path
from contrastive.training.checkpoint_io import explained_write_errors

log = logging.getLogger(__name__)

DATA_RECORD = "data_files.json.gz"


def relative_names(root: str | os.PathLike, paths: Sequence[Path]) -> list[str]:
    """``paths`` relative to ``root``, sorted, as recorded (a path outside it kept whole)."""
    return sorted(relative_key(Path(path), Path(root)) for path in paths)


def list_hash(names: Sequence[str]) -> str:
    """SHA-256 of the sorted names, one a line; a non-UTF-8 name hashes as its own bytes."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name}\n".encode(errors="surrogateescape"))
    return digest.hexdigest()


def write_record(run_dir: Path, names: Sequence[str]) -> None:
    """Records the images the run trains on, as :func:`relative_names` (one process writes)."""
    names = list(names)
    # JSON's \u escapes keep names with newlines and non-UTF-8 bytes (surrogates) intact.
    record = {"count": len(names), "sha256": list_hash(names), "files": names}
    target = run_dir / DATA_RECORD
    with (
        explained_write_errors(target, "record of the training images"),
        atomic_path(target) as temporary,
    ):
        temporary.write_bytes(gzip.compress(json.dumps(record).encode("ascii"), mtime=0))


def read_record(run_dir: Path) -> dict | None:
    """The run's record, or None where it has none (runs from before it) or it is unreadable."""
    target = run_dir / DATA_RECORD
    if not target.is_file():
        return None
    try:
        record = json.loads(gzip.decompress(target.read_bytes()))
        record["count"], record["sha256"] = int(record["count"]), str(record["sha256"])
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError) as error:
        log.warning(
            "cannot read %s (%s): the data is not compared with the checkpoint's", target, error
        )
        return None
    return record


def describe_change(
    run_dir: Path, names: Sequence[str], since: str = "the checkpoint"
) -> str | None:
    """What changed in the training images (``names``, as :func:`relative_names` gives them)
    since the run's record, in one line.

    Returns:
        None where nothing changed or the run has no record; else ``the data changed since
        the checkpoint: N removed, M added (A -> B images)``, or only the counts where the
        record holds no list.
    """
    record = read_record(run_dir)
    if record is None:
        return None
    if list_hash(names) == record["sha256"]:
        return None
    before, after = int(record["count"]), len(names)
    recorded = record.get("files")
    if isinstance(recorded, list):
        old, new = set(recorded), set(names)
        counts = f"{len(old - new)} removed, {len(new - old)} added ({before} -> {after} images)"
    else:
        counts = f"{before} -> {after} images"
    return f"the data changed since {since}: {counts}"
