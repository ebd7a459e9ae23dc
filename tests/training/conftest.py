"""Training runs in child processes, for tests that kill, interrupt or resume them.

Each child is forked from the test process and runs ``contrastive.cli.main`` with the
arguments of ``contrastive train``: a fresh interpreter would spend seconds importing torch
and Lightning per run. The child uses one thread (no OpenMP pool after a fork, and the same
arithmetic in every run), sends its output to files and exits with the CLI's exit code.

Two test-only stalls put a signal at a known point instead of racing the run:

* ``stall_at_step=N``: the training step at global step N signals ``ready`` and waits until
  Ctrl-C or SIGTERM arrives (or 60 s pass).
* ``stall_in_save=K``: the K-th write of ``last.ckpt`` leaves half the file at its temporary
  path, signals ``ready`` and sleeps (a hung write).

``interrupt_seen`` is set once the child's Ctrl-C handler ran, so a second Ctrl-C is sent
after the first was handled rather than merged with it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from contrastive.backbone_config import BackboneConfig
from contrastive.training.config import TrainConfig
from contrastive.views.config import ViewConfig

#: 32 images in batches of 8: 4 steps per epoch, 12 in all.
IMAGES_PER_CLASS, BATCH_SIZE, EPOCHS = 16, 8, 3

_FORKS = "fork" in multiprocessing.get_all_start_methods()


def _install_stalls(
    ready: Any, interrupt_seen: Any, stall_at_step: int | None, stall_in_save: int | None
) -> None:
    """Wraps the training step and ``torch.save`` (in the child only) to stop on cue."""
    from contrastive.training.interrupt import GracefulInterrupt
    from contrastive.training.module import ContrastiveModule

    training_step, save = ContrastiveModule.training_step, torch.save
    on_sigint = GracefulInterrupt._on_sigint
    last_saves: list[str] = []

    def noting_sigint(self: GracefulInterrupt, *args: Any) -> None:
        on_sigint(self, *args)
        interrupt_seen.set()

    def stalling_step(self: ContrastiveModule, batch: Any, batch_idx: int) -> Any:
        if self.global_step == stall_at_step:
            stop = next(c for c in self.trainer.callbacks if isinstance(c, GracefulInterrupt))
            ready.set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                stop.requested or self.trainer.received_sigterm
            ):
                time.sleep(0.01)
        return training_step(self, batch, batch_idx)

    def stalling_save(obj: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        save(obj, path, *args, **kwargs)
        if os.path.basename(str(path)).startswith(".last.ckpt."):
            last_saves.append(str(path))
            if len(last_saves) == stall_in_save:
                os.truncate(path, os.path.getsize(path) // 2)
                ready.set()
                time.sleep(60)

    ContrastiveModule.training_step = stalling_step  # type: ignore[method-assign]
    GracefulInterrupt._on_sigint = noting_sigint  # type: ignore[method-assign]
    torch.save = stalling_save


def _child(
    args: list[str],
    log: str,
    ready: Any,
    interrupt_seen: Any,
    stall_at_step: int | None,
    stall_in_save: int | None,
) -> None:
    with open(log, "w") as output:
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    torch.set_num_threads(1)
    _install_stalls(ready, interrupt_seen, stall_at_step, stall_in_save)
    from contrastive.cli import main

    code = main(args)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


class TrainingChild:
    """A running ``contrastive train`` child.

    Attributes:
        process: The forked process.
        log: File holding the child's stdout and stderr.
        ready: Set when the child reached its stall.
        interrupt_seen: Set when the child's Ctrl-C handler ran.
    """

    def __init__(
        self,
        args: list[str],
        log: Path,
        stall_at_step: int | None = None,
        stall_in_save: int | None = None,
    ) -> None:
        self.log = log
        fork = multiprocessing.get_context("fork")
        self.ready, self.interrupt_seen = fork.Event(), fork.Event()
        self.process = fork.Process(
            target=_child,
            args=(args, str(log), self.ready, self.interrupt_seen, stall_at_step, stall_in_save),
        )
        self.process.start()

    def wait_until_ready(self) -> None:
        """Blocks until the child reached its stall; fails if it ended first."""
        self._wait_for(self.ready, "its stall")

    def wait_until_interrupt_seen(self) -> None:
        """Blocks until the child handled a Ctrl-C; fails if it ended first."""
        self._wait_for(self.interrupt_seen, "handling Ctrl-C")

    def _wait_for(self, event: Any, what: str) -> None:
        while not event.wait(timeout=0.1):
            if not self.process.is_alive():
                raise AssertionError(
                    f"child ended (exit {self.process.exitcode}) before {what}:\n{self.output()}"
                )

    def finish(self) -> int:
        """Waits for the child and returns its exit code."""
        self.process.join(timeout=300)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
            raise AssertionError(f"child did not finish:\n{self.output()}")
        return self.process.exitcode

    def signal(self, signum: int) -> None:
        """Sends ``signum`` without waiting."""
        assert self.process.pid is not None
        os.kill(self.process.pid, signum)

    def send(self, signum: int) -> int:
        """Sends ``signum`` and returns the exit code (negative: killed by a signal)."""
        self.signal(signum)
        return self.finish()

    def output(self) -> str:
        """Everything the child printed."""
        return self.log.read_text() if self.log.exists() else ""


class TrainingRuns:
    """Starts children of one tiny deterministic run.

    Args:
        images: The training images.
        cache: Folder for the decoded cache.
    """

    def __init__(self, images: Path, cache: Path) -> None:
        self.args = [
            "train",
            "--data",
            str(images),
            "--backbone",
            "resnet18_quarter",
            "--batch-size",
            str(BATCH_SIZE),
            "--epochs",
            str(EPOCHS),
            "--input-size",
            "32",
            "--num-workers",
            "0",
            "--cache-dir",
            str(cache),
            "--checkpoint-every",
            "1",
            "--accelerator",
            "cpu",
            "--precision",
            "32-true",
            "--deterministic",
            "--seed",
            "3",
        ]

    def start(self, run_dir: Path, *extra: str, **stalls: int) -> TrainingChild:
        """Starts the run into ``run_dir``; ``extra`` flags win; ``stalls`` see the module."""
        return self.start_args([*self.args, "--out", str(run_dir), *extra], run_dir, **stalls)

    def resume(self, run_dir: Path) -> TrainingChild:
        """Starts ``contrastive train --resume --out run_dir``."""
        return self.start_args(["train", "--resume", "--out", str(run_dir)], run_dir)

    @staticmethod
    def start_args(args: list[str], run_dir: Path, **stalls: int) -> TrainingChild:
        """Starts a child with exactly ``args``, logging beside ``run_dir``."""
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        log = run_dir.parent / f"{run_dir.name}-{time.monotonic_ns()}.log"
        return TrainingChild(args, log, **stalls)

    @staticmethod
    def weights(run_dir: Path) -> dict[str, torch.Tensor]:
        """The exported ``backbone.pt`` of a finished run."""
        return torch.load(run_dir / "backbone.pt", map_location="cpu", weights_only=True)


class ReferenceRun:
    """The uninterrupted run: started once, beside the tests' own children, and shared."""

    def __init__(self, runs: TrainingRuns, run_dir: Path) -> None:
        self.runs = runs
        self.run_dir = run_dir
        self.child = runs.start(run_dir)

    def weights(self) -> dict[str, torch.Tensor]:
        """Waits for the run and returns its final backbone weights."""
        assert self.child.finish() == 0, self.child.output()
        return self.runs.weights(self.run_dir)


def _write_images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(IMAGES_PER_CLASS):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{index}.png")
    return root


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 random 32 px images in two folders."""
    return _write_images(tmp_path_factory.mktemp("tiny") / "images")


@pytest.fixture(scope="session")
def decoded_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the tiny images' decoded cache, shared by every run."""
    return tmp_path_factory.mktemp("decoded")


@pytest.fixture(scope="session")
def training(tiny_images: Path, decoded_cache: Path) -> TrainingRuns:
    """Children running the tiny deterministic configuration."""
    if not _FORKS:
        pytest.skip("training children are forked (POSIX only)")
    return TrainingRuns(tiny_images, decoded_cache)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Trains in this process on one thread, as the children do: on a busy machine two
    threads per process contend far more than they gain."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config(
    one_thread: None, tiny_images: Path, decoded_cache: Path, tmp_path: Path
) -> TrainConfig:
    """One epoch (4 steps) of the tiny configuration, for ``train()`` in this process."""
    return TrainConfig(
        data=str(tiny_images),
        out=str(tmp_path / "run"),
        views=ViewConfig(input_size=32),
        backbone=BackboneConfig("resnet18_quarter"),
        batch_size=BATCH_SIZE,
        epochs=1,
        num_workers=0,
        accelerator="cpu",
        precision="32-true",
        checkpoint_every_n_epochs=1,
        cache_dir=str(decoded_cache),
    )


@pytest.fixture(scope="session")
def reference_run(
    training: TrainingRuns, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReferenceRun]:
    """The uninterrupted run of the tiny deterministic configuration."""
    reference = ReferenceRun(training, tmp_path_factory.mktemp("reference") / "run")
    yield reference
    if reference.child.process.is_alive():
        reference.child.process.kill()
    reference.child.process.join()


def assert_same_weights(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Every tensor bit for bit equal."""
    assert actual.keys() == expected.keys()
    different = [name for name in expected if not torch.equal(actual[name], expected[name])]
    assert not different, f"{len(different)} of {len(expected)} tensors differ: {different[:3]}"


@pytest.fixture(scope="session")
def same_weights() -> Any:
    """:func:`assert_same_weights`, for the test modules."""
    return assert_same_weights
