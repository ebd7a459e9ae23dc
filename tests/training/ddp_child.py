"""``contrastive train`` for the two-process tests, with a few test-only additions.

Lightning's DDP launcher starts rank 1 by re-running this script's command line, so both
ranks get the additions (no fork of the test process, whose command line is pytest's):

* every rank prints ``rank R stopped at step S`` when ``fit`` returns, and rank 0 prints
  ``train() took T s``;
* ``CONTRASTIVE_TEST_STALL=RANK:STEP``: that rank's training step at that global step writes
  ``CONTRASTIVE_TEST_READY`` (a file path) and waits until a signal arrives (at most 60 s),
  so a test signals one rank at a known step while the other waits in the next collective.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any


def _install_stall(rank: int, step: int, ready: Path) -> None:
    from contrastive.training.interrupt import GracefulInterrupt
    from contrastive.training.module import ContrastiveModule

    training_step = ContrastiveModule.training_step

    def stalling_step(self: ContrastiveModule, batch: Any, batch_idx: int) -> Any:
        if self.global_rank == rank and self.global_step == step:
            stop = next(c for c in self.trainer.callbacks if isinstance(c, GracefulInterrupt))
            ready.write_text(str(os.getpid()))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                stop.requested or self.trainer.received_sigterm
            ):
                time.sleep(0.01)
        return training_step(self, batch, batch_idx)

    ContrastiveModule.training_step = stalling_step  # type: ignore[method-assign]


def main() -> int:
    """Runs the CLI with the test additions; returns its exit code."""
    from contrastive.cli import main as cli

    # The package re-exports the function train(), which hides the module of that name.
    training = importlib.import_module("contrastive.training.train")

    fit, train = training._fit, training.train

    def noting_fit(run: Any, *args: Any) -> None:
        try:
            fit(run, *args)
        finally:
            print(
                f"rank {run.trainer.global_rank} stopped at step {run.trainer.global_step}",
                flush=True,
            )

    def timed_train(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = train(*args, **kwargs)
        if result.module.global_rank == 0:
            print(f"train() took {time.perf_counter() - started:.1f} s", flush=True)
        return result

    training._fit = noting_fit
    training.train = timed_train
    stall = os.environ.get("CONTRASTIVE_TEST_STALL")
    if stall:
        rank, step = (int(part) for part in stall.split(":"))
        _install_stall(rank, step, Path(os.environ["CONTRASTIVE_TEST_READY"]))
    return cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
