"""What ``--time-budget`` would plan on a GPU we do not have (issue 12, item 5).

No GPU is needed: the planner (``contrastive.planning.plan_recipe``) is given a described
GPU (an H200 unless told otherwise) and a throughput model in place of its measured probe,
and prints its decisions, the images/s and steps/s behind them and the passes they buy::

    python benchmarks/gpu_plan.py                       # CIFAR-10 (50k, 32 px), 15 min
    python benchmarks/gpu_plan.py --images 100000 --side 64 --budget 600

Each throughput model caps training work (3x the forward FLOPs of two views per image) at a
sustained rate and images/s at a launch-bound ceiling. On a real GPU the planner measures the
candidates instead; these numbers are expectations, not measurements.
"""

from __future__ import annotations

import argparse
import sys

from contrastive.hardware import GpuInfo, Hardware
from contrastive.planning import FolderStats, plan_recipe
from contrastive.planning.planner import Candidate, candidate_flops
from contrastive.recipes import cpu_budget_recipe


def described_gpu(name: str, memory_gib: float, cpu_cores: int) -> Hardware:
    """One bf16-capable GPU (compute capability 9.0) of ``memory_gib`` and its host."""
    gpu = GpuInfo(name, int(memory_gib * 2**30), (9, 0))
    return Hardware("cuda", cpu_cores, True, memory_bytes=8 * cpu_cores * 2**30, gpus=(gpu,))


#: (name, sustained TFLOP/s of training work, images/s ceiling).
MODELS = (
    ("optimistic: 300 TFLOP/s (30% of bf16 peak)", 300.0, 60_000.0),
    ("middle: 60 TFLOP/s (small-image convnets at batch 512)", 60.0, 20_000.0),
    ("pessimistic: 30 TFLOP/s", 30.0, 10_000.0),
)


def throughput_model(tflops: float, ceiling: float):
    """Images/s of a candidate: work-bound at ``tflops``, launch-bound at ``ceiling``."""

    def images_per_second(candidate: Candidate, batch_size: int, stored_size: int) -> float:
        return min(ceiling, tflops * 1e12 / (6 * candidate_flops(candidate)))

    return images_per_second


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000, help="images in the folder")
    parser.add_argument("--side", type=int, default=32, help="their side in pixels")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds for the run")
    parser.add_argument("--gpu", default="NVIDIA H200", help="the GPU's name")
    parser.add_argument("--gpu-memory-gib", type=float, default=141.0, help="its memory")
    parser.add_argument("--cpu-cores", type=int, default=16, help="the host's cores")
    args = parser.parse_args(argv)
    hardware = described_gpu(args.gpu, args.gpu_memory_gib, args.cpu_cores)
    stats = FolderStats(
        args.images, min(args.images, 2000), args.side, args.side, args.side, args.side**2, 0.0
    )
    base = cpu_budget_recipe(data="folder", out="run")
    for name, tflops, ceiling in MODELS:
        rate = throughput_model(tflops, ceiling)
        result = plan_recipe(stats, hardware, args.budget, base, (), rate)
        gflop = candidate_flops(result.candidate) / 1e9
        print(f"== {name}")
        print(
            f"  {result.images_per_second:,.0f} images/s = "
            f"{result.images_per_second / result.batch_size:.1f} steps/s of "
            f"{result.batch_size}; {gflop:.2f} forward GFLOP per view; "
            f"{result.passes:.0f} passes"
        )
        print("\n".join(result.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
