"""Shared parts of the benchmarks (``cifar10.py``, ``folders.py``, ...): provenance of a row,
the machine's matmul rate, Lightly's example recipe as the peer, loading a finished run, and
the kNN protocol.

The protocol of every row: L2-normalised features of whole images (the package's
evaluation transform) of a labeled train folder (the bank) and a labeled test folder,
kNN top-1 with k=200, T=0.1, cosine similarity, as Lightly's benchmarks.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from contrastive.backbones import build_backbone
from contrastive.embeddings import embed_folder
from contrastive.evaluation.knn import knn_rankings
from contrastive.evaluation.labels import LabeledPair, labeled_pair
from contrastive.evaluation.metrics import topk_accuracy
from contrastive.hardware import cpu_runs_bf16_natively
from contrastive.training.budget import parse_duration
from contrastive.training.config import TrainConfig, load_config_file
from contrastive.views.config import ViewConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

KNN_K = 200
KNN_TEMPERATURE = 0.1


# ----------------------------------------------------------------------------- provenance
def machine() -> dict:
    """CPU model, core count, native bf16, torch threads, GPU and torch version of this machine.

    ``cpu_native_bf16`` matters when reading rows across sessions: ``--precision auto``
    trains in bf16 only where the CPU computes in it, so two hosts of the same model name
    can run the same command in different precisions.
    """
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "cpu_native_bf16": cpu_runs_bf16_natively(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
    }


def matmul_flops(
    seconds: float = 2.0,
    size: int = 4096,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
) -> float:
    """FLOP/s of a ``size`` x ``size`` matmul in ``dtype`` on ``device``, repeated for
    ``seconds`` after one untimed product: the rate a step's achieved FLOP/s is compared with,
    measured in the same process because the host's speed drifts."""
    device = torch.device(device)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    generator = torch.Generator().manual_seed(0)
    left, right = (
        torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
        for _ in range(2)
    )
    left @ right
    synchronize()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        left @ right
        count += 1
    synchronize()
    return 2 * size**3 * count / (time.perf_counter() - started)


def git_commit() -> str:
    """The short commit of the checkout, with ``+dirty`` when tracked files changed."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            text=True,
            capture_output=True,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def peak_memory_mib() -> float:
    """Peak resident memory of this process and of its (waited-for) children, MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024  # Linux reports KiB


def budget_seconds(text: str) -> float:
    """Seconds of a budget such as ``"10m"`` (the parser ``--time-budget`` uses)."""
    return parse_duration(text)


# ------------------------------------------------------------------------------ evaluation
def embed_pair(
    extractor: torch.nn.Module,
    train_dir: Path,
    test_dir: Path,
    views: ViewConfig,
    batch_size: int = 512,
) -> LabeledPair:
    """Features of a labeled train (bank) and test folder, through the evaluation transform
    of ``views`` (its evaluation size and normalisation), labels aligned by class name.
    Every image is decoded whole, as for the rows recorded before reduced decoding."""
    settings = {"batch_size": batch_size, "progress": False, "full_decode": True}
    train = embed_folder(train_dir, views, {"f": extractor}, **settings)
    test = embed_folder(test_dir, views, {"f": extractor}, **settings)
    return labeled_pair(train["f"], test["f"], str(train_dir), str(test_dir))


def knn_top1(pair: LabeledPair, k: int = KNN_K, temperature: float = KNN_TEMPERATURE) -> float:
    """Weighted kNN top-1 accuracy (cosine on L2-normalised features), k capped at the bank."""
    k = min(k, len(pair.train_labels))
    ranked = knn_rankings(
        pair.train_features,
        pair.train_labels,
        pair.test_features,
        (k,),
        temperature,
        len(pair.classes),
    )[k]
    return topk_accuracy(ranked, pair.test_labels, (1,))[1]


# ------------------------------------------------------------------------- peer baseline
class BudgetSteps:
    """How many steps of a training loop fit a wall-clock budget, from the loop's own rate.

    The first plan is made from steps 2-5 (step 1 pays one-off costs), then made again each
    time another tenth of the budget has passed, from the rate since the last plan, as our
    trainer's ``FillTimeBudget`` does: a plan from three steps alone misjudged the steady
    rate, and the peer stopped at 462-532 of its 600 s (Imagenette, Caltech-101, RSSCN7).

    Args:
        budget_s: Seconds from this object's creation to the end of the loop.
        clock: Seconds now (a fake clock in tests).
        fill: Share of the remaining time each plan fills (the rest absorbs jitter).
        slice_fraction: Share of the budget between two plans.
    """

    def __init__(
        self,
        budget_s: float,
        clock: Callable[[], float] = time.perf_counter,
        fill: float = 0.95,
        slice_fraction: float = 0.1,
    ) -> None:
        self.budget_s = budget_s
        self.clock = clock
        self.fill = fill
        self.slice_s = slice_fraction * budget_s
        self.started = clock()
        self.planned: int | None = None
        self._window: tuple[int, float] | None = None

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return self.clock() - self.started

    def after_step(self, step: int) -> bool:
        """Records that ``step`` steps are done; True where the loop should stop now."""
        now = self.clock()
        if step == 2:
            self._window = (step, now)
        elif self._window is not None:
            window_step, window_time = self._window
            first = self.planned is None and step == 5
            # A plan that ran out before the next slice (its first steps were slow) is
            # measured again rather than ended: the loop stops where no step fits.
            again = self.planned is not None and (
                now - window_time >= self.slice_s or step >= self.planned
            )
            if first or again:
                seconds_per_step = (now - window_time) / (step - window_step)
                remaining = self.budget_s - (now - self.started)
                self.planned = step + max(0, int(remaining * self.fill / seconds_per_step))
                self._window = (step, now)
        planned_done = self.planned is not None and step >= self.planned
        return planned_done or now - self.started >= self.budget_s


def peer_baseline(
    train_dir: Path,
    budget_s: float,
    batch_size: int = 256,
    workers: int = 2,
    seed: int = 0,
    input_size: int = 32,
) -> tuple[torch.nn.Module, dict]:
    """Lightly's own SimCLR example recipe, written with Lightly's public API, for a budget.

    torchvision resnet18 (ImageNet stem, fc removed), ``SimCLRProjectionHead(512, 512, 128)``,
    ``NTXentLoss``, ``SimCLRTransform(input_size, cj_strength=0.5, gaussian_blur=0.0)``
    over ``LightlyDataset`` in a DataLoader, SGD lr 0.06 x batch/128 (momentum 0.9, wd 5e-4,
    Lightly's CIFAR-10 benchmark), fp32, cosine schedule over the steps that fit the budget
    (:class:`BudgetSteps`: measured on the first steps and re-measured during the run, as our
    planner does). Its images are normalised with the ImageNet mean and std
    (``SimCLRTransform``'s default), as :class:`ViewConfig`'s default.
    """
    import torchvision
    from lightly.data import LightlyDataset
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    budget = BudgetSteps(budget_s)
    torch.manual_seed(seed)
    resnet = torchvision.models.resnet18()
    backbone = torch.nn.Sequential(*list(resnet.children())[:-1], torch.nn.Flatten())
    head = SimCLRProjectionHead(512, 512, 128)
    model = torch.nn.Sequential(backbone, head)
    transform = SimCLRTransform(input_size=input_size, cj_strength=0.5, gaussian_blur=0.0)
    dataset = LightlyDataset(input_dir=str(train_dir), transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    criterion = NTXentLoss()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.06 * batch_size / 128, momentum=0.9, weight_decay=5e-4
    )
    peak_lr = optimizer.param_groups[0]["lr"]
    step, images = 0, 0
    done = False
    while not done:
        for (view0, view1), _, _ in loader:
            if budget.planned is not None:
                progress = min(step / budget.planned, 1.0)
                optimizer.param_groups[0]["lr"] = peak_lr * 0.5 * (1 + math.cos(math.pi * progress))
            loss = criterion(model(view0), model(view1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            images += view0.shape[0]
            if budget.after_step(step):
                done = True
                break
    seconds = budget.elapsed()
    return backbone.eval(), {
        "steps": step,
        "images_seen": images,
        "train_s": round(seconds, 1),
        "train_images_per_s": round(images / seconds, 1),
        "final_loss": round(loss.item(), 4),
    }


# ----------------------------------------------------------------------------- our runs
def load_run(run: Path) -> tuple[TrainConfig, torch.nn.Module, dict]:
    """A finished run's config, final backbone and training stats (from metrics.csv)."""
    config = TrainConfig.from_dict(load_config_file(run / "config.yaml"))
    backbone, _ = build_backbone(config.backbone)
    backbone.load_state_dict(torch.load(run / "backbone.pt", map_location="cpu"))
    metrics = run / "metrics.csv"
    rows = list(csv.DictReader(metrics.open())) if metrics.is_file() else []
    logged = max((int(r["step"]) for r in rows if r.get("step")), default=-1) + 1
    steps = max(config.max_steps or 0, logged)  # metrics are logged every 50 steps
    # config.yaml is rewritten when a time budget is re-planned; Lightning writes
    # hparams.yaml once, when fitting starts (after the step probe: a slight undercount).
    start_marker = run / "hparams.yaml" if (run / "hparams.yaml").exists() else run / "config.yaml"
    seconds = (run / "backbone.pt").stat().st_mtime - start_marker.stat().st_mtime
    images = steps * config.batch_size
    return (
        config,
        backbone.eval(),
        {
            "steps": steps,
            "images_seen": images,
            "train_s": round(seconds, 1),
            "train_images_per_s": round(images / seconds, 1),
            "evaluated_later": True,
        },
    )


def append_row(row: dict, results: Path, write_markdown: Callable[[Path, Path], None]) -> None:
    """Adds the end-of-run fields, appends ``row`` to the JSONL ``results``, regenerates its
    Markdown table next to it and prints the row (without the bulky config and machine)."""
    row["peak_mib"] = round(peak_memory_mib())
    row["load_end"] = round(os.getloadavg()[0], 2)
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as file:
        file.write(json.dumps(row) + "\n")
    write_markdown(results, results.with_suffix(".md"))
    print(json.dumps({k: v for k, v in row.items() if k not in ("config", "machine")}))
