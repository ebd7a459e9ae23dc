"""Where a whole training run's time goes: the step's arithmetic, or what surrounds it.

``benchmarks/step_profile.py`` times the bare step. A real run also loads batches, runs
Lightning's loop, logs, checks its health, saves checkpoints and plans its budget. This
script samples the run's main thread with `py-spy <https://github.com/benfred/py-spy>`_
(``pip install py-spy``; it is not a dependency of the package) and sums the samples by
what the run was doing::

    python benchmarks/run_profile.py -- contrastive train --data DIR --out RUN --time-budget 3m
    python benchmarks/run_profile.py --raw profile.txt      # summarise an earlier recording

Each sample counts once, in the first category of :data:`CATEGORIES` that one of its frames
matches: a health check's forward pass counts as health, the budget probe's steps as
planning, and a training step's convolutions as forward.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

#: (category, substrings of a frame) in priority order: the first category any frame of a
#: sample matches takes the sample.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("start-up and planning", ("contrastive/planning/", "importlib", "<frozen ", "budget.py")),
    ("health and monitors", ("training/health", "training/collapse", "training/knn_monitor")),
    ("end-of-run exports", ("training/projector_at_end", "contrastive/export")),
    ("checkpoints", ("checkpoint", "torch/serialization")),
    ("backward", ("torch/autograd/", "backward (torch/_tensor.py")),
    ("views", ("contrastive/views/",)),
    ("loss", ("contrastive/losses/", "lightly/loss/")),
    ("forward", ("contrastive/backbones", "torch/nn/modules/", "lightly/models/")),
    ("optimiser", ("torch/optim/", "training/optim")),
    ("data loading", ("contrastive/data/", "torch/utils/data/", "training/resumable")),
    ("logging and progress", ("training/progress", "metrics_history", "loggers/", "logger_")),
    ("Lightning's loop", ("pytorch_lightning/",)),
)

#: The categories a training step's own work falls in.
STEP_WORK = ("backward", "views", "loss", "forward", "optimiser")


def category(frames: list[str]) -> str:
    """The category of one sample's stack (frames outermost first)."""
    for name, markers in CATEGORIES:
        if any(marker in frame for frame in frames for marker in markers):
            return name
    return "other"


def summarise(raw_lines: list[str], thread: str = "MainThread") -> Counter[str]:
    """Samples per category from py-spy's ``--format raw --threads`` output.

    Args:
        raw_lines: Lines ``thread (ID): NAME;frame;frame... COUNT``.
        thread: Only samples of the thread of this name count (the training loop's).
    """
    counts: Counter[str] = Counter()
    for line in raw_lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if not frames[0].startswith("thread") or not frames[0].endswith(f": {thread}"):
            continue
        counts[category(frames[1:])] += int(count)
    return counts


def report(counts: Counter[str]) -> str:
    """One line per category, largest first, then the step's share."""
    total = sum(counts.values()) or 1
    lines = [
        f"{name:24s} {count:7d} samples {100 * count / total:5.1f}%"
        for name, count in counts.most_common()
    ]
    step = sum(counts[name] for name in STEP_WORK)
    lines.append(f"the training step itself ({', '.join(STEP_WORK)}): {100 * step / total:.1f}%")
    return "\n".join(lines)


def record(command: list[str], out: Path, rate: int) -> None:
    """Runs ``command`` under py-spy, writing the raw stacks to ``out``."""
    spy = shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy not found: pip install py-spy (a profiler, not a package dependency)")
    subprocess.run(
        [spy, "record", "--rate", str(rate), "--format", "raw", "--threads", "-o", str(out)]
        + ["--", *command],
        check=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, help="summarise this py-spy raw recording")
    parser.add_argument("--out", type=Path, help="keep the recording here")
    parser.add_argument("--rate", type=int, default=50, help="samples per second (default 50)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the run to profile")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.raw is None and not command:
        parser.error("give a command after --, or --raw FILE")
    raw = args.raw
    if raw is None:
        raw = args.out or Path(tempfile.mkdtemp(prefix="run-profile-")) / "profile.txt"
        record(command, raw, args.rate)
    if not raw.is_file():
        parser.error(f"--raw {raw}: no such file")
    print(report(summarise(raw.read_text().splitlines())))


if __name__ == "__main__":
    main()
