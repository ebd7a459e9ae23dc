"""Time budgets and precision: plan a run's schedule for a wall-clock budget.

``--time-budget 10m`` measures the real training step (views, forward, backward, optimiser)
for a few steps, then sets the number of optimiser steps so the whole run, warm-up and
cosine decay included, ends at the budget. Every schedule (learning rate, MoCo momentum)
is defined over those steps, so the run ends well-formed rather than cut off mid-schedule.

The plan is made inside ``fit`` (:class:`PlanTimeBudget`), where the processes of a DDP run
exist: rank 0's measurement decides the steps of every rank, so all of them end together.

A probe of a few steps misjudges the steady-state rate (first-touch page faults, kernel
selection, other load), so :class:`FillTimeBudget` re-measures the rate inside the training
loop a few times early in the run and moves the end of the schedule to the deadline.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from lightly.utils.scheduler import CosineWarmupScheduler
from pytorch_lightning.utilities.seed import isolate_rng

from contrastive.errors import ContrastiveError
from contrastive.hardware import cpu_runs_bf16_natively, gpus_run_bf16_natively
from contrastive.training.lightning_compat import set_step_limit
from contrastive.training.optim import stretch_schedule

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
log = logging.getLogger(__name__)

# Share of the budget the planner fills: leaves room for Lightning's per-step overhead
# (logging), checkpoints and the final export, which the step probe does not see.
_FILL = 0.9


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"10m"``, ``"1.5h"`` or ``"1h30m"``.

    Raises:
        ContrastiveError: If the text is not a positive duration.
    """
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip().lower())
        joined = "".join(f"{number}{unit}" for number, unit in parts)
        if not parts or joined != re.sub(r"\s+", "", text.strip().lower()):
            raise ContrastiveError(f"cannot read time budget {text!r}; use e.g. 90s, 10m, 1.5h")
        seconds = 0.0
        for number, unit in parts:
            if unit and unit not in _UNITS:
                raise ContrastiveError(f"unknown time unit {unit!r} in {text!r}; use s, m or h")
            seconds += float(number) * _UNITS.get(unit or "s", 1)
    if not seconds > 0:
        raise ContrastiveError(f"time budget must be positive, got {text!r}")
    return seconds


def check_time_budget(text: str | None, name: str = "time_budget") -> None:
    """Reads a budget before any work (a typo failed after the folder scan), and says how a
    bare number is read: ``--time-budget 10`` meant 10 seconds and trained 2 steps.

    Args:
        text: The budget as given (None: no budget).
        name: How the user gave it (``--time-budget``, ``time_budget``), for the message.
    """
    if text is None:
        return
    seconds = parse_duration(text)
    if is_bare_number(text) and seconds < 60:
        log.warning(
            "%s %s is read as %g seconds, most of it start-up; for minutes give %sm",
            name,
            str(text).strip(),
            seconds,
            str(text).strip(),
        )


def is_bare_number(text: str | float | int) -> bool:
    """Whether a budget was given without a unit (then it is seconds: ``"10"`` is 10 s)."""
    return re.fullmatch(r"\s*\d+(\.\d+)?\s*", str(text)) is not None


@dataclass(frozen=True)
class BudgetPlan:
    """How many steps fit into the remaining budget."""

    seconds_per_step: float
    max_steps: int
    epochs: int


def plan_budget(
    remaining_seconds: float,
    seconds_per_step: float,
    steps_per_epoch: int,
    budget_seconds: float | None = None,
) -> BudgetPlan:
    """Steps (and the epochs that contain them) that fill ``remaining_seconds``.

    Args:
        remaining_seconds: What is left of the budget.
        seconds_per_step: One measured training step.
        steps_per_epoch: Steps in one epoch.
        budget_seconds: The whole budget, to say where the time went when none is left.

    Raises:
        ContrastiveError: If not even one step fits.
    """
    steps = int(remaining_seconds * _FILL / max(seconds_per_step, 1e-9))
    if steps < 1:
        if remaining_seconds <= 0 and budget_seconds:
            # "leaves -57 s" said nothing of where the minute went.
            used = budget_seconds - remaining_seconds
            spent = (
                f"start-up, scanning, decoding and measuring took {used:.0f} s of the "
                f"{budget_seconds:.0f} s budget (a busy machine?)"
            )
        else:
            spent = f"the time budget leaves {remaining_seconds:.0f} s"
        raise ContrastiveError(
            f"{spent}, less than one training step ({seconds_per_step:.1f} s); give a "
            "larger --time-budget or a smaller model"
        )
    return BudgetPlan(seconds_per_step, steps, max(1, math.ceil(steps / steps_per_epoch)))


class PlanTimeBudget(pl.Callback):
    """Measures the training step and sets the run's steps once ``fit`` has set up its processes.

    Runs in ``setup``: after the DDP process group exists (so rank 0's numbers can be
    broadcast) and before the optimiser and schedule are built (so they are built for the
    planned steps). Every rank runs the probe, because the loss gathers negatives across
    ranks and a probe on rank 0 alone would wait for the others; rank 0's step time and
    remaining budget are broadcast and every rank plans from them, so all ranks get the same
    steps (or the same error). The probe runs on a copy of the module with the random state
    put back afterwards: training starts from the seed as an unplanned run does.

    Args:
        budget_seconds: The whole run's budget.
        started: ``clock()`` value at which the budget started.
        steps_per_epoch: Optimiser steps in one epoch (per rank).
        batches: The training loader, read for the probe's batches.
        time_budget: The budget as the user wrote it, for the log line.
        on_plan: Called with the planned steps on rank 0 (e.g. to record them in the run's
            configuration, so ``--resume`` continues the same schedule).
        clock: Seconds as a float.

    Attributes:
        plan: The plan every rank adopted, once ``setup`` ran.
    """

    def __init__(
        self,
        budget_seconds: float,
        started: float,
        steps_per_epoch: int,
        batches: Iterable,
        time_budget: str = "",
        on_plan: Callable[[BudgetPlan], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.budget_seconds = budget_seconds
        self.started = started
        self.steps_per_epoch = steps_per_epoch
        self.batches = batches
        self.time_budget = time_budget or f"{budget_seconds:g}s"
        self.on_plan = on_plan
        self.clock = clock
        self.plan: BudgetPlan | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.plan is not None:
            return
        # Timing stops at the budget where one process runs; DDP ranks step together (the
        # loss gathers across them), so there every rank times every step.
        left = self.budget_seconds - (self.clock() - self.started)
        with isolate_rng():
            per_step = measure_seconds_per_step(
                pl_module,
                self.batches,
                str(trainer.precision),
                trainer.strategy.root_device,
                max_seconds=max(left, 0.0) if trainer.world_size == 1 else None,
            )
        remaining = self.budget_seconds - (self.clock() - self.started)
        # One set of numbers for every rank: the plan (or its error) is the same everywhere.
        per_step, remaining = trainer.strategy.broadcast((per_step, remaining), src=0)
        self.plan = plan_budget(remaining, per_step, self.steps_per_epoch, self.budget_seconds)
        set_step_limit(trainer, self.plan.max_steps, self.steps_per_epoch)
        if trainer.is_global_zero:
            log.info(
                "time budget %s: %.3f s/step -> %d steps (%d epochs of %d steps)",
                self.time_budget,
                per_step,
                self.plan.max_steps,
                self.plan.epochs,
                self.steps_per_epoch,
            )
            if self.on_plan is not None:
                self.on_plan(self.plan)


#: A run that ends with fewer than this share of its largest plan's steps is said to have
#: fallen short (:meth:`FillTimeBudget.shortfall`).
SHORTFALL_SHARE = 0.5


class FillTimeBudget(pl.Callback):
    """Re-plans the number of steps during training so the run ends at its deadline.

    At a few fractions of the planned steps it measures the step rate of the loop since the
    re-plan before the previous one (two windows, so that one burst of load on a shared
    machine does not cut the plan by itself) and sets the total steps to what fits before
    ``deadline``. The learning-rate and momentum schedules follow (both are functions of
    step / total), so the run still ends with a finished cosine decay. The step rate drifts
    during a run (epoch ends, checkpoints, other load), so re-plans continue until
    ``fractions[-1]``; late ones change the total by a few percent where the learning rate
    is already small. Fractions of the steps alone are not enough where the machine slows
    down after a re-plan: a plan of 2,438 steps made at 0.1 s/step re-planned next at step
    731, and at the 0.6 s/step of a busy machine that came minutes after the deadline. So
    the plan is also checked every step (every ``check_every_steps`` in DDP): once
    ``time_slice`` of the budget has passed since the last re-plan it re-plans, and once
    the deadline has passed training ends with that step. In DDP every process adopts rank
    0's plan: the ranks start from one plan
    (:class:`PlanTimeBudget`) and count the same global steps, so they reach every re-plan
    at the same step, where rank 0's new total (and its clock's verdict) is broadcast.

    Args:
        deadline: ``clock()`` value at which training should end.
        fractions: Points (share of the planned steps) at which to re-plan.
        min_window_steps: Steps a measurement window needs before it is trusted.
        reserve_seconds: Time kept free before the deadline for the work after the last
            step, besides what the callbacks announce (:func:`seconds_after_training`):
            the final checkpoint and export (under 0.1 s for a small network), the
            TensorBoard projector (1.4-2.3 s for 1,000 images on 2 cores) and the exit of a
            Python process that loaded torch and Lightning (1.1-1.75 s on 2 cores).
        on_replan: Called with the new total steps (on rank 0), e.g. to record it in the
            run's configuration so that ``--resume`` continues the same schedule.
        clock: Seconds as a float (``time.perf_counter``; tests pass a simulated clock).
        time_slice: Share of the training time (from the first step to the deadline) after
            which the plan is re-made, whatever the step count.
        check_every_steps: Steps between two looks at the clock for ``time_slice`` and the
            deadline in DDP, where each look is a broadcast (one process looks every step).
    """

    def __init__(
        self,
        deadline: float,
        fractions: tuple[float, ...] = (0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95),
        min_window_steps: int = 10,
        reserve_seconds: float = 5.0,
        on_replan: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        time_slice: float = 0.1,
        check_every_steps: int = 5,
    ) -> None:
        self.deadline = deadline
        self.clock = clock
        self.on_replan = on_replan
        self.fractions = fractions
        self.min_window_steps = min_window_steps
        self.reserve_seconds = reserve_seconds
        self.time_slice = time_slice
        self.check_every_steps = max(1, check_every_steps)
        self.replans: list[tuple[int, int]] = []
        #: ``(step, total steps, seconds per step)`` of the plan with the most steps.
        self._largest_plan: tuple[int, int, float] | None = None
        self._window: tuple[int, float] | None = None
        self._previous_window: tuple[int, float] | None = None
        self._slice_seconds = 0.0
        self._next = 0

    def training_seconds_left(self, trainer: pl.Trainer) -> float:
        """Seconds of training left: to the deadline, less the time kept for the work after
        the last step."""
        reserve = self.reserve_seconds + seconds_after_training(trainer.callbacks)
        return max(0.0, self.deadline - reserve - self.clock())

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object
    ) -> None:
        step, now = trainer.global_step, self.clock()
        if self._window is None:
            # The first step pays one-off costs (allocations, kernel choice): not counted.
            self._window = (step, now)
            self._slice_seconds = self.time_slice * max(0.0, self.deadline - now)
            return
        total = trainer.max_steps
        window_step, window_time = self._window
        window_steps = step - window_step
        reserve = self.reserve_seconds + seconds_after_training(trainer.callbacks)
        by_steps = self._next < len(self.fractions) and step >= self.fractions[self._next] * total
        late = overdue = False
        # One process reads its clock every step; ranks of DDP share a verdict (a broadcast).
        every = 1 if trainer.world_size == 1 else self.check_every_steps
        if step % every == 0:
            # Rank 0's clock decides for every rank, so that all re-plan at the same step.
            late, overdue = trainer.strategy.broadcast(
                (now - window_time >= self._slice_seconds, now >= self.deadline - reserve),
                src=0,
            )
        # A late window is already a tenth of the budget long: enough to measure from. A
        # plan of a few steps (a first step's one-off costs taken for the rate: 9 steps
        # planned in 49 s, trained in 3 s) is checked after a tenth of its steps, at least 2.
        needed = min(self.min_window_steps, max(2, total // 10))
        trusted = window_steps >= (1 if late else needed)
        if not (overdue or (trusted and (by_steps or late))):
            return
        if by_steps:
            self._next += 1
        # Over this window and the one before: one window of a passing burst of load (2.8
        # s/step against 0.1-0.2) had cut 40% of the plan, and the run ended 15 s early.
        since_step, since_time = self._previous_window or self._window
        seconds_per_step = (now - since_time) / max(1, step - since_step)
        remaining = self.deadline - now - reserve
        # Past the deadline: training ends with this step.
        new_total = step if overdue else step + max(1, int(remaining / seconds_per_step))
        new_total = trainer.strategy.broadcast(new_total, src=0)
        self._previous_window, self._window = self._window, (step, now)
        if self._largest_plan is None or new_total > self._largest_plan[1]:
            self._largest_plan = (step, new_total, seconds_per_step)
        if overdue or abs(new_total - total) > 0.01 * total:
            set_total_steps(trainer, new_total)
            self.replans.append((step, new_total))
            if not trainer.is_global_zero:
                return
            if self.on_replan is not None:
                self.on_replan(new_total)
            # The tenth-of-the-budget re-plans of a steady machine move the end by a few
            # steps: said only with -v; a large change, a step fraction or the deadline aloud.
            large = by_steps or overdue or abs(new_total - total) > 0.05 * total
            log.log(
                logging.INFO if large else logging.DEBUG,
                "time budget: %.3f s/step measured at step %d -> %d steps in total (was %d)",
                seconds_per_step,
                step,
                new_total,
                total,
            )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        message = self.shortfall(trainer.global_step)
        if message is not None and trainer.is_global_zero and not trainer.interrupted:
            log.warning(message)

    def shortfall(self, steps_done: int) -> str | None:
        """What the user is told where the machine slowed down so much during the run that
        it trained under half the steps once planned (another process on the same cores):
        otherwise the weak result reads as the method's."""
        if self._largest_plan is None or self._window is None:
            return None
        step, planned, fast = self._largest_plan
        if steps_done >= SHORTFALL_SHARE * planned:
            return None
        return (
            f"time budget: the run trained {steps_done} steps, under half of the {planned} "
            f"planned at step {step} ({fast:.3f} s/step then): the machine slowed down "
            "during the run (other work on these cores?), so this is the result of a shorter "
            "run; where cores are shared, a process started with OMP_NUM_THREADS=1 slows less"
        )


def seconds_after_training(callbacks: Iterable[object]) -> float:
    """The time the callbacks expect to spend once the last step is done.

    A callback that works after training (the final health measurement) says how long that
    takes with a ``seconds_after_training()`` method, priced at what it measured during the
    run; callbacks without one add nothing.
    """
    total = 0.0
    for callback in callbacks:
        estimate = getattr(callback, "seconds_after_training", None)
        if callable(estimate):
            total += max(0.0, float(estimate()))
    return total


def set_total_steps(trainer: pl.Trainer, total_steps: int) -> None:
    """Moves the end of training (and of the warm-up + cosine schedule) to ``total_steps``.

    The learning rate jumps a little if this happens mid-run; early in a run (where
    :class:`FillTimeBudget` re-plans) the jump is small next to the gain of using the budget.
    """
    set_step_limit(trainer, total_steps, int(trainer.num_training_batches))
    for scheduler_config in trainer.lr_scheduler_configs:
        if isinstance(scheduler_config.scheduler, CosineWarmupScheduler):
            stretch_schedule(scheduler_config.scheduler, total_steps)


def measure_seconds_per_step(
    module: torch.nn.Module,
    batches: Iterable,
    precision: str,
    device: torch.device,
    steps: int = 3,
    fastest: bool = False,
    max_seconds: float | None = None,
) -> float:
    """Times full training steps on a throw-away copy of ``module`` (weights untouched).

    The first step is a warm-up and not counted, unless it is the only one: the timing
    stops once ``max_seconds`` have passed.

    Args:
        module: The training module (``prepare_batch`` and ``method.training_loss``).
        batches: Batches to step on, repeated as needed.
        precision: Lightning precision string (``bf16-mixed``, ``32-true``...).
        device: Where to step.
        steps: Timed steps after the warm-up.
        fastest: Return the fastest timed step instead of the mean. Comparing candidates
            measured seconds apart needs this: a busy or throttling host only ever adds
            time, so the fastest step is the steadiest estimate of what a step costs (the
            planner's probe of a 32 px candidate read 296-456 images/s as a mean of two
            steps over three tries in one minute, 460-484 as the fastest of six).
        max_seconds: Stop timing after the step that passes this many seconds (None: time
            every step). An unplanned ResNet-18 at 224 px took 108 s a step on 2 cores: four
            steps measured a 1-minute budget's run for 465 s before saying it could not fit.
    """
    probe = copy.deepcopy(module).to(device).train()
    optimizer = torch.optim.SGD([p for p in probe.parameters() if p.requires_grad], lr=1e-9)
    timings: list[float] = []
    iterator = iter(batches)
    began = time.perf_counter()
    for _ in range(steps + 1):
        if max_seconds is not None and timings and time.perf_counter() - began >= max_seconds:
            break
        batch = next(iterator, None)
        if batch is None:
            iterator = iter(batches)
            batch = next(iterator)
        started = time.perf_counter()
        training_step(probe, optimizer, batch, precision, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - started)
    timed = timings[1:] or timings
    return min(timed) if fastest else sum(timed) / len(timed)


def training_step(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: object,
    precision: str,
    device: torch.device,
) -> None:
    """One full training step of ``module`` on a host ``batch``: to ``device``, views
    (``prepare_batch``), loss in ``precision``'s autocast, backward and ``optimizer`` update.

    Does not synchronise: callers that time it on a GPU synchronise themselves.
    """
    dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(precision.split("-")[0])
    batch = module.prepare_batch(_to_device(batch, device))
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = module.method.training_loss(batch[0], progress=0.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _to_device(batch: object, device: torch.device) -> object:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(item, device) for item in batch)
    return batch


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16 mixed precision where the hardware runs it natively, else fp32.

    On CPUs with native bf16 (AVX512-BF16/AMX, read by
    :func:`~contrastive.hardware.cpu_runs_bf16_natively`) and on GPUs with bf16 units
    (compute capability 8.0 or newer, :func:`~contrastive.hardware.gpus_run_bf16_natively`)
    that is the fastest safe choice; CPUs and GPUs that only emulate bf16 (AVX-512 without
    BF16; T4, V100) train slower in it and get fp32. fp16 is avoided by default because
    contrastive logits at low temperature overflow its range without loss scaling.

    This runs before Lightning starts its processes, so it must not initialise CUDA (a
    forked process cannot use CUDA initialised before the fork): the GPUs are asked
    through NVML instead.
    """
    if precision != "auto":
        return precision
    use_gpu = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and torch.cuda.is_available()
    )
    native = gpus_run_bf16_natively() if use_gpu else cpu_runs_bf16_natively()
    return precision_for(native)


def precision_for(native_bf16: bool) -> str:
    """``--precision auto``'s choice on hardware that does (or does not) run bf16 natively."""
    return "bf16-mixed" if native_bf16 else "32-true"
