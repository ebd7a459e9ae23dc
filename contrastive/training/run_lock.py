"""One training per run folder: an exclusive lock held while a run trains.

A nightly job still running when the next one starts, or two ``--resume`` of one run, used to
train side by side into one folder: both exited 0, ``metrics.csv`` interleaved their rows and
the last writer owned ``last.ckpt``. The lock is a POSIX record lock (``lockf``) on
``RUN/.contrastive-lock``: the kernel releases it when the process ends, however it ends, so a
killed run never leaves a stale lock, and, unlike ``flock``, DataLoader workers forked from the
process do not hold it after the process lets go. Under DDP only the first process takes it
(the others train the same run). Where ``fcntl`` is missing (Windows) runs are not locked.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from pytorch_lightning.utilities import rank_zero_only

from contrastive.errors import ContrastiveError

log = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

#: The lock file inside a run folder (hidden: scans and run listings pass over it).
LOCK_FILE = ".contrastive-lock"


@contextlib.contextmanager
def hold_run_folder(run_dir: Path) -> Iterator[None]:
    """Holds the run folder's lock while the block runs.

    Args:
        run_dir: The run folder; created if missing (a path that is a file is left to the
            run's own checks, which name it).

    Raises:
        ContrastiveError: If another process holds the lock: it names the process, when it
            started, and what to do.
    """
    if fcntl is None or rank_zero_only.rank != 0 or run_dir.is_file():
        yield
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115
    except OSError as error:
        raise ContrastiveError(
            f"cannot create output folder {run_dir}: {error.strerror or error}"
        ) from None
    try:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                # A file system without locks (some network mounts): train, unguarded.
                log.warning(
                    "%s cannot be locked (%s): train it from one process only",
                    run_dir,
                    error.strerror or error,
                )
                yield
                return
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ContrastiveError(
                f"{run_dir} is being trained by {holder}: one training writes a run folder at a "
                "time; wait for it to finish (then --resume continues it), or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"process {os.getpid()} on {socket.gethostname()} since {started}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


def check_not_held(run_dir: Path) -> None:
    """Refuses at once a run folder another process is training (before a plan's probes,
    which took seconds to end in the same refusal); :func:`hold_run_folder` still takes the
    lock for the run.

    Raises:
        ContrastiveError: As :func:`hold_run_folder` does, when another process holds it.
    """
    if fcntl is None or rank_zero_only.rank != 0 or not (run_dir / LOCK_FILE).is_file():
        return
    with hold_run_folder(run_dir):
        pass


def training_holder(run_dir: Path) -> str | None:
    """Who is training ``run_dir`` now (``"process 123 on host since ..."``), or None.

    Only looks: the lock is not taken (a reader such as ``export`` must not block a
    ``--resume``), and nothing is written.
    """
    lock_file = run_dir / LOCK_FILE
    if fcntl is None or not lock_file.is_file():
        return None
    try:
        with open(lock_file, "r+", encoding="utf-8") as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno in (errno.EACCES, errno.EAGAIN):
                    return handle.read().strip() or "another process"
            return None  # closing the file released the lock just taken
    except OSError:  # unreadable: nothing can be said
        return None
