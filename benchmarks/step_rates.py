"""Bare-loop training-step rates of planner candidates at several batch sizes.

Where does a training step's time go on this device: arithmetic, or the host launching
kernels? Each row builds a candidate's training module exactly as the planner's probe does
(``contrastive.planning.probe.candidate_module``: on-device views from uint8 images,
backbone, head, loss) and steps it on synthetic uint8 images with the probe's own step
(``contrastive.training.budget.training_step``: SGD, the precision ``auto`` resolves to,
bf16 where native), timing ``--steps`` steps after ``--warmup`` with one synchronisation
per block (no Lightning, no data loading). Twice the batch at nearly the same time per
step means the step is bound by launches, not FLOPs::

    python benchmarks/step_rates.py                         # the default candidates
    python benchmarks/step_rates.py --rows resnet18:32:512 resnet18_half:24:1024

Is ``--precision auto``'s choice the faster one on this host? Time both, alternating so
that a drift of the host's speed does not favour either, and read ``auto`` in each row::

    python benchmarks/step_rates.py --rows resnet10_quarter:24:128 --cpu-batch-divisor 1 \
        --precisions 32-true bf16-mixed bf16-mixed 32-true

How much of the arithmetic the host can do does a step use (issue 12 item 2), and what does
the channels-last layout training uses buy? Time both layouts, alternating, with an N^2
matmul in each row's precision timed before and after the rows in the same process; each row
then gives its TFLOP/s as a fraction of the matmul's::

    python benchmarks/step_rates.py --rows resnet10_quarter:24:128 --cpu-batch-divisor 1 \
        --layouts channels_last contiguous contiguous channels_last --matmul-side 2048

On the CPU the batches are divided by ``--cpu-batch-divisor`` so that a check stays short.
Rows are printed as JSON lines as they are timed (and written to ``--out`` if given); with
``--matmul-side`` the matmul's lines and then the rows with their fractions follow.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import matmul_flops

from contrastive.planning.planner import Candidate, candidate_flops
from contrastive.planning.probe import candidate_module
from contrastive.training.budget import resolve_precision, training_step
from contrastive.training.config import TrainConfig

#: backbone:view px:batch rows measured by default (the twenty-second session's H200 table).
DEFAULT_ROWS = (
    "resnet10_quarter:24:512",
    "resnet18_half:24:512",
    "resnet18_half:24:1024",
    "resnet18_half:24:2048",
    "resnet18:32:512",
    "resnet18:32:1024",
    "resnet50:24:512",
)


def parse_row(text: str) -> tuple[str, int, int]:
    """``backbone:view:batch`` as ``(backbone, view size, batch size)``."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise argparse.ArgumentTypeError(f"--rows: expected backbone:view:batch, got {text!r}")
    return parts[0], int(parts[1]), int(parts[2])


def step_rate(
    backbone: str,
    view_size: int,
    batch_size: int,
    stored_size: int,
    device: torch.device,
    warmup: int,
    steps: int,
    precision: str = "auto",
    layout: str = "channels_last",
) -> dict:
    """Milliseconds per training step, images/s and TFLOP/s of training work for one row,
    in ``precision`` (``auto``: what training would resolve it to on this device) and
    memory ``layout`` (``channels_last``, as training runs, or ``contiguous``)."""
    candidate = Candidate(backbone, view_size, 1)
    base = replace(TrainConfig(out="unused"), channels_last=layout == "channels_last")
    module = candidate_module(candidate, batch_size, stored_size, base).to(device).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-9, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (batch_size, 3, stored_size, stored_size), dtype=torch.uint8, generator=generator
    )
    host_batch = (images, torch.arange(batch_size))
    auto = resolve_precision("auto", device.type)
    precision = resolve_precision(precision, device.type)

    def step() -> None:
        training_step(module, optimizer, host_batch, precision, device)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - started) / steps
    # Forward and backward of two views: 3x the forward FLOPs per view, twice.
    work = 6 * candidate_flops(candidate)
    return {
        "backbone": backbone,
        "view": view_size,
        "batch": batch_size,
        "ms_per_step": round(1000 * seconds, 2),
        "images_per_s": round(batch_size / seconds, 1),
        "tflops": round(batch_size * work / seconds / 1e12, 4),
        "precision": precision,
        "layout": layout,
        "auto": auto,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }


def matmul_tflops(side: int, precision: str, device: torch.device) -> float:
    """TFLOP/s of a ``side`` x ``side`` matmul in the dtype ``precision`` computes in (bf16
    for ``bf16-mixed``, else float32), repeated for a second."""
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
    return matmul_flops(1.0, side, dtype, device) / 1e12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        nargs="+",
        type=parse_row,
        default=[parse_row(r) for r in DEFAULT_ROWS],
        help="backbone:view:batch rows (default: the session's H200 table)",
    )
    parser.add_argument("--stored-size", type=int, default=32, help="side of the uint8 images")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per row")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per row")
    parser.add_argument(
        "--cpu-batch-divisor", type=int, default=64, help="batches are divided by this on CPU"
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=("auto", "32-true", "bf16-mixed"),
        default=["auto"],
        help="time each row in each of these, in this order (default: auto)",
    )
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=("channels_last", "contiguous"),
        default=["channels_last"],
        help="time each row in each of these memory layouts, in this order "
        "(default: channels_last, as training runs)",
    )
    parser.add_argument(
        "--matmul-side",
        type=int,
        default=0,
        help="also time an N x N matmul in each precision before and after the rows, and give "
        "each row's TFLOP/s as a fraction of it (default 0: not timed)",
    )
    parser.add_argument("--out", type=Path, help="write the rows here as JSON lines")
    args = parser.parse_args(argv)
    if args.matmul_side < 0:
        parser.error(f"--matmul-side: expected 0 or a positive side, got {args.matmul_side}")
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    precisions = {resolve_precision(p, device.type) for p in args.precisions}
    matmul_before = {
        p: matmul_tflops(args.matmul_side, p, device) for p in precisions if args.matmul_side
    }
    rows = []
    for backbone, view_size, batch_size in args.rows:
        if not on_gpu:
            batch_size = max(batch_size // args.cpu_batch_divisor, 2)
        for precision in args.precisions:
            for layout in args.layouts:
                row = step_rate(
                    backbone,
                    view_size,
                    batch_size,
                    args.stored_size,
                    device,
                    args.warmup,
                    args.steps,
                    precision,
                    layout,
                )
                print(json.dumps(row), flush=True)
                rows.append(row)
        if on_gpu:
            torch.cuda.empty_cache()
    if args.matmul_side:
        # Before and after the rows: the host's speed drifts (by a third within an hour on
        # 2 shared cores), so the rows are compared with the mean of both.
        for precision, before in matmul_before.items():
            after = matmul_tflops(args.matmul_side, precision, device)
            reference = (before + after) / 2
            print(
                json.dumps(
                    {
                        "matmul_side": args.matmul_side,
                        "precision": precision,
                        "tflops_before": round(before, 4),
                        "tflops_after": round(after, 4),
                    }
                )
            )
            for row in rows:
                if row["precision"] == precision:
                    row["matmul_tflops"] = round(reference, 4)
                    row["fraction_of_matmul"] = round(row["tflops"] / reference, 3)
        for row in rows:
            print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
