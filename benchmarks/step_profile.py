"""Where a training step's time goes, and what ``torch.compile`` buys (issue 12, item 2).

Times the planner's candidate step (views from uint8 images, forward, NT-Xent, backward, SGD)
by phase, in the precision training would use here (``--precision``), prints the achieved
training GFLOP/s and the operators that take the time (``torch.profiler``), then the same
step with the backbone compiled::

    python benchmarks/step_profile.py                       # CPU recipe: quarter width, 24 px
    python benchmarks/step_profile.py --backbone resnet18_half --view-size 32 --no-compile
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from contrastive.planning.planner import Candidate, candidate_flops
from contrastive.planning.probe import candidate_module
from contrastive.recipes import cpu_budget_recipe
from contrastive.training.budget import resolve_precision

PHASES = ("views", "forward + loss", "backward", "optimiser")


def build_step(
    candidate: Candidate, batch_size: int, stored_size: int, compiled: bool, precision: str
):
    """A closure running one training step in ``precision`` (``bf16-mixed`` or ``32-true``);
    returns ``{phase: seconds}``."""
    base = cpu_budget_recipe().with_overrides(compile=compiled)
    module = candidate_module(candidate, batch_size, stored_size, base).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    images = torch.randint(0, 256, (batch_size, 3, stored_size, stored_size), dtype=torch.uint8)

    def step() -> dict[str, float]:
        marks = [time.perf_counter()]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            batch = module.prepare_batch((images, torch.arange(batch_size)))
            marks.append(time.perf_counter())
            loss = module.method.training_loss(batch[0], progress=0.0)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        return {phase: marks[i + 1] - marks[i] for i, phase in enumerate(PHASES)}

    return step


def timed(step, repeats: int) -> dict[str, float]:
    """Mean seconds per phase over ``repeats`` steps."""
    totals = dict.fromkeys(PHASES, 0.0)
    for _ in range(repeats):
        for phase, seconds in step().items():
            totals[phase] += seconds / repeats
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet18_quarter")
    parser.add_argument("--view-size", type=int, default=24)
    parser.add_argument("--stem-stride", type=int, default=1)
    parser.add_argument("--stored-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled step")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "bf16-mixed", "32-true"),
        help="auto: what training would use here (bf16 only where the CPU computes in it)",
    )
    args = parser.parse_args()
    precision = resolve_precision(args.precision, "cpu")
    candidate = Candidate(args.backbone, args.view_size, args.stem_stride)
    work = args.batch_size * 2 * 3 * candidate_flops(candidate)  # 2 views, fwd + 2x bwd
    threads = torch.get_num_threads()
    print(f"{candidate.describe()}, batch {args.batch_size}, {threads} threads, {precision}")
    for compiled in (False,) if args.no_compile else (False, True):
        step = build_step(candidate, args.batch_size, args.stored_size, compiled, precision)
        started = time.perf_counter()
        step()
        first = time.perf_counter() - started
        step()
        phases = timed(step, args.repeats)
        total = sum(phases.values())
        shares = ", ".join(f"{p} {s * 1000:.1f} ms ({s / total:.0%})" for p, s in phases.items())
        print(
            f"compile={compiled}: first step {first:.1f} s; {total * 1000:.1f} ms per step, "
            f"{args.batch_size / total:.0f} images/s, {work / total / 1e9:.0f} GFLOP/s; {shares}"
        )
        if not compiled:
            with profile(activities=[ProfilerActivity.CPU]) as profiler:
                for _ in range(3):
                    step()
            print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
