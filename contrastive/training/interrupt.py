"""Ctrl-C and SIGTERM stop training at a step boundary with a checkpoint to resume from.

The first Ctrl-C only raises a flag: the step in flight finishes, the next one does not
start, the run's state is saved to ``checkpoints/last.ckpt`` and :class:`TrainingInterrupted`
tells how to continue. A second Ctrl-C stops at once (Lightning's own handling) and the last
periodic checkpoint is what remains. SIGTERM (a scheduler's or ``kill``'s polite stop) and
SIGHUP (a dropped ssh session; unless ``nohup`` ignores it) are handled the same way; a
second one ends the process at once.

Under DDP a signal reaches one process, or all of them at different steps. The request is
reduced across processes before every step, so all stop at the same step and save one
checkpoint together. (Lightning's own SIGTERM handling is replaced while training runs: it
broadcasts from inside the signal handler, a collective the other processes do not join.)
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

#: A closed terminal's signal (an ssh session dropped without nohup); absent on Windows.
SIGHUP = getattr(signal, "SIGHUP", None)
#: Shell convention for "terminated by signal N": 128 + N.
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
if SIGHUP is not None:
    EXIT_CODES[SIGHUP] = 129


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped by a signal; the message says what was saved and how to resume.

    Attributes:
        exit_code: The process exit status the CLI should return (130 for Ctrl-C).
    """

    def __init__(self, message: str, exit_code: int = EXIT_CODES[signal.SIGINT]) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _StoppedAfterSaveError(Exception):
    """Raised inside ``fit`` once the interrupt checkpoint is saved, to leave the loop."""


class GracefulInterrupt(pl.Callback):
    """Saves a resumable checkpoint when training is asked to stop.

    Use :meth:`stopping_cleanly` around ``trainer.fit``.

    Args:
        checkpoint: Where the state is saved (the file ``--resume`` reads).
        resume_hint: What the user should run to continue, quoted in the message.
    """

    def __init__(self, checkpoint: Path, resume_hint: str) -> None:
        self.checkpoint = checkpoint
        self.resume_hint = resume_hint
        self.requested = False
        #: The signal that asked to stop (SIGTERM wins over Ctrl-C, in any process).
        self.signal = signal.SIGINT
        self._saved_at: int | None = None
        self._stopped_at_once = False
        self._previous_handler: Any = signal.default_int_handler
        self._previous_hangup: Any = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        # A second Ctrl-C must still stop a step that hangs.
        signal.signal(signal.SIGINT, self._previous_handler)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal = signal.SIGTERM
        # A second SIGTERM ends a process that hangs (a collective, a stuck write) at once.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def _on_sighup(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.signal != signal.SIGTERM:
            self.signal = signal.Signals(signum)
        signal.signal(signum, signal.SIG_DFL)

    @contextlib.contextmanager
    def stopping_cleanly(self) -> Iterator[None]:
        """Catches Ctrl-C during ``fit`` and turns every way of stopping into
        :class:`TrainingInterrupted`.

        Raises:
            TrainingInterrupted: If training was stopped by Ctrl-C or SIGTERM.
        """
        previous = signal.getsignal(signal.SIGINT)
        # Handlers can only be set from the main thread; a process started with Ctrl-C
        # ignored (``nohup``, a background job) keeps ignoring it; None: set outside Python.
        catch = threading.current_thread() is threading.main_thread() and previous not in (
            signal.SIG_IGN,
            None,
        )
        if catch:
            self._previous_handler = previous
            signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield
        except _StoppedAfterSaveError:
            raise TrainingInterrupted(self._message(self.signal), EXIT_CODES[self.signal]) from None
        except SIGTERMException:
            raise TrainingInterrupted(
                self._message(signal.SIGTERM), EXIT_CODES[signal.SIGTERM]
            ) from None
        except SystemExit:
            # Lightning ends a KeyboardInterrupt it caught with sys.exit(1).
            if not self._stopped_at_once:
                raise
            raise TrainingInterrupted(self._message(signal.SIGINT)) from None
        finally:
            if catch:
                # Lightning leaves SIGINT ignored after it handled a KeyboardInterrupt.
                signal.signal(signal.SIGINT, self._previous_handler)
            if self._previous_hangup is not None:
                signal.signal(SIGHUP, self._previous_hangup)
                self._previous_hangup = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning installed its SIGTERM handler just before this hook; Lightning puts the
        # handlers it found back when fit ends.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
            # A hang-up killed the run with no checkpoint since the last periodic one (step 9
            # of 218 in one budget run); nohup's ignored SIGHUP stays ignored.
            if SIGHUP is not None and signal.getsignal(SIGHUP) == signal.SIG_DFL:
                self._previous_hangup = signal.SIG_DFL
                signal.signal(SIGHUP, self._on_sighup)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        requested = self.requested
        if trainer.world_size > 1:
            # Ranks see a signal at different steps (or only one sees it): all stop at the
            # same step, named after the strongest signal any of them received.
            asked = int(self.signal) if self.requested else 0
            asked = int(
                trainer.strategy.reduce(
                    torch.tensor(asked, device=trainer.strategy.root_device), reduce_op="max"
                ).item()
            )
            requested = asked > 0
            if requested:
                self.signal = signal.Signals(asked)
        if requested:
            # The previous step is complete (optimiser and schedule) and this one has not
            # begun: the state a resumed run continues from exactly.
            self._save(trainer)
            raise _StoppedAfterSaveError

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException) and trainer.world_size == 1:
            # Raised by Lightning at the end of a step (a SIGTERM before training started),
            # so the state is consistent. Under DDP the other processes would not join.
            self._save(trainer)
        elif isinstance(exception, KeyboardInterrupt):
            # Raised anywhere, possibly mid-step: not a state worth saving.
            self._stopped_at_once = True

    def _save(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.checkpoint)
        self._saved_at = trainer.global_step

    def _message(self, signum: int) -> str:
        name = signal.Signals(signum).name
        if self._saved_at is None:
            saved = "stopped at once, the last periodic checkpoint is kept"
        else:
            saved = f"at step {self._saved_at}, saved {self.checkpoint}"
        return f"training stopped by {name} ({saved}); continue with `{self.resume_hint}`"
