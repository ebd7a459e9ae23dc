"""``RUN/train.log``: what a run said, kept beside what it wrote.

A run's plan, warnings (skipped images, health verdicts, budget re-plans), epoch lines and how
it ended were printed to the terminal only: a cron job had to redirect stderr itself and keep
the file next to the run. The log is appended to, so a resumed run adds its part below the
first one's; each part starts with a line naming the command and the package version. Only
the first process of a DDP run writes it.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

from pytorch_lightning.utilities import rank_zero_only

from contrastive.console import ConsoleFormatter
from contrastive.errors import ContrastiveError, user_message

#: The log file inside a run folder.
RUN_LOG = "train.log"
# The loggers whose messages a run prints: ours (plan, epochs, health, budget).
_LOGGERS = ("contrastive",)


@contextlib.contextmanager
def run_log(run_dir: Path, plan: Mapping[str, str] | None = None) -> Iterator[None]:
    """Copies the run's messages and warnings into ``run_dir / train.log`` while the block
    runs, then says how it ended (finished, stopped by a signal, or the error).

    Args:
        run_dir: The run folder (it exists: the run's lock is held).
        plan: The recipe planner's decisions and reasons, written first.
    """
    if rank_zero_only.rank != 0:
        yield
        return
    try:
        handler = logging.FileHandler(run_dir / RUN_LOG, mode="a", encoding="utf-8")
    except OSError as error:  # the run's own writes will name the problem
        logging.getLogger(__name__).debug("no %s: %s", RUN_LOG, error)
        yield
        return
    handler.setLevel(logging.INFO)
    handler.setFormatter(ConsoleFormatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    _write(handler, f"== {_command()} (contrastive {_version()})")
    for decision, reason in (plan or {}).items():
        _write(handler, f"plan: {decision}: {reason}")
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    shown = warnings.showwarning

    def show_and_log(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        _write(handler, f"warning: {message}", logging.WARNING)
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show_and_log
    try:
        yield
    except ContrastiveError as error:
        _write(handler, f"error: {user_message(error)}", logging.ERROR)
        raise
    except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM, SIGHUP (TrainingInterrupted)
        _write(handler, str(stop) or "interrupted")
        raise
    except Exception as error:
        _write(handler, f"error: {type(error).__name__}: {error}", logging.ERROR)
        raise
    else:
        _write(handler, "finished")
    finally:
        warnings.showwarning = shown
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()


def _write(handler: logging.Handler, message: str, level: int = logging.INFO) -> None:
    handler.handle(logging.LogRecord("contrastive", level, __file__, 0, message, None, None))


def _command() -> str:
    """The command line as typed (``contrastive train ...``), or the Python program."""
    arguments = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return shlex.join(arguments) if arguments else "train() from Python"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("contrastive")
    except PackageNotFoundError:
        return "unknown"
