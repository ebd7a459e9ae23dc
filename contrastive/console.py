"""What runs print: contrastive's own messages, not Lightning's banners and tips.

The command line configures logging itself. Called from Python (a notebook, a script) with
logging left unconfigured, Python shows warnings only, so a run's plan and epoch lines were
lost, while Lightning, which adds its own handler, printed its banners, a tip and one
"weights_only" line per checkpoint. :func:`show_messages` does for contrastive what
Lightning does for itself, and only where nobody configured logging.
"""

from __future__ import annotations

import logging
import sys
import warnings

_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning")


class ConsoleFormatter(logging.Formatter):
    """Messages as written, a warning's with ``warning: `` in front (as Python's warnings get
    from the command line), so that ``grep '^warning:'`` finds every one in a log."""

    def __init__(self, fmt: str = "%(message)s", datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        if record.levelno >= logging.WARNING and not record.message.startswith(
            ("warning:", "error:")
        ):
            record = logging.makeLogRecord(
                {**record.__dict__, "message": f"warning: {record.message}"}
            )
        return super().formatMessage(record)


class HideLightningInfo(logging.Filter):
    """Lets through Lightning's warnings only, not its banners, tips and the line it logs
    per checkpoint ("`weights_only` was not set").

    A handler's filter, because a level set on Lightning's loggers does not last: importing
    ``pytorch_lightning`` sets its logger back to INFO, and the command line imports it
    after configuring logging (it is not needed to parse the flags).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not any(
            record.name == name or record.name.startswith(name + ".") for name in _LIGHTNING_LOGGERS
        )


def quiet_third_party_logs(verbose: bool = False) -> None:
    """Hides Lightning's banners and tips; our own messages say what matters."""
    level = logging.INFO if verbose else logging.WARNING
    for name in _LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(level)
    if not verbose:
        warnings.filterwarnings("ignore", module="pytorch_lightning")
        warnings.filterwarnings("ignore", module="lightning_fabric")


def show_messages() -> None:
    """Prints contrastive's messages (INFO and up) to stderr where logging is unconfigured.

    Leaves everything as it is when the root logger has a handler (``logging.basicConfig``,
    the command line, pytest) or contrastive's logger already has one.
    """
    ours = logging.getLogger("contrastive")
    if logging.getLogger().handlers or ours.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter())
    ours.addHandler(handler)
    if ours.level == logging.NOTSET:
        ours.setLevel(logging.INFO)
    ours.propagate = False  # a root handler added later would print each line twice
    quiet_third_party_logs()
