"""The recipe planner: a training recipe from the folder, the hardware and the time budget.

``contrastive train --data DIR --time-budget T`` asks one question: which network, at which
resolution, with which batch and schedule, learns most from this folder in ``T`` on this
machine? The planner answers it with rules over measurable quantities, never a data set's
name:

* **Images seen decide first.** The budget buys ``images/s x seconds`` images. A network
  that costs ``k`` times the reference per image (FLOPs) is only worth it when the run still
  passes over the data ``PASSES_PER_DOUBLING x log2(k)`` times; below that, more passes of a
  cheaper network learn more (2 cores: on CIFAR-10 at 3 minutes the quarter-width network
  at 24 px beat 32 px views by 2.7 points and the half-width network by 7; at 40 minutes 24
  px views, 34 passes, still beat 32 px views, 21 passes, by 1.9; on STL-10 at 10 minutes
  48 px views through the stride-2 stem, 28 passes, beat 64 px, 17 passes, by 2.8; on 9,469
  photos of 224 px at 10 minutes 48 px views through the stride-2 stem, 36 passes, beat 32 px
  views at full resolution, 26 passes, by 2.9; on 3,452 photos of 128 px at 10 minutes 48 px
  views through the stride-2 stem, 58 passes, beat 64 px, 35 passes, by 4.2, and 87 passes
  beat 54 by 4.3; on 3,409 photos of 400 px 48 px views through the stride-2 stem beat 32
  px views at full resolution and 64 px views, 55-65 passes, by 6.7 and 8.6; on 2 fp32
  cores in 4 minutes the quarter-width ResNet-10 beat the ResNet-18 of the same width by
  3.8 points, 2.1 passes against 1.3). Where the hardware runs a costlier network in far
  less than its FLOPs' share of time (a GPU bound by kernel launches), ``k`` comes from the
  measured time instead (:data:`FLOPS_PER_TIME_EXPONENT`): on one H200 in 3 minutes this
  took a full-width ResNet-18 (74.68%) where FLOPs alone took a quarter-width one (70.36%).
  A pass counts at most ``PASS_IMAGES`` images: past a
  CIFAR-sized folder, more images do not slow learning. Costs count from the cheapest
  network the user's settings leave (with ``--backbone`` set, from that network's own
  cheapest view size and stem).
* **Resolution is spent where the images have it.** Work is set by the feature map after
  the stem (the *working size*); a stride-2 stem shows views twice as large for about the
  same work, used when the stored images are at least that large. Views are never larger
  than the images (upsampling adds work, not detail).
* **Pixels the images have are kept.** Crops come from a cache of up to twice the views'
  side (an 8% crop still holds 0.57 of a view's side in real pixels); whole images are
  evaluated 4/3 larger than the views (FixRes), up to 5/3 where the images have those
  pixels; 8-100% crops once the run passes over the data enough times, sooner where the
  cache holds twice the views' side (tiny crops of small images are mostly upsampled noise).
  At 10 minutes these three together reached 66.30 / 64.60 / 66.50 (three runs, two
  sessions) on STL-10 (96 px) against 62.80 (the first session's run) from a 64 px cache,
  64 px evaluation and 20-100% crops, and 67.75 on 3,452 flowers of 128 px against 64.51
  from the same three old settings in the same session.
* **The rest follows from the choice**: a batch of 128 on CPUs (more updates per second)
  and 512 on GPUs, halved while the budget gives fewer than ``MIN_STEPS`` steps (early on,
  updates count more), NT-Xent at T=0.1, a projection head at least
  ``PROJECTION_HIDDEN_WIDTH`` wide whatever the backbone's width, colour jitter without
  hue/saturation for grayscale folders.

Every choice comes with its reason (:attr:`Plan.decisions`), printed before training and
saved in the run's ``config.yaml``; a setting the user fixed is kept, and the rest is planned
around it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch

from contrastive.backbone_config import BackboneConfig, is_torchvision_resnet
from contrastive.backbones import build_backbone
from contrastive.errors import ContrastiveError
from contrastive.hardware import Hardware
from contrastive.planning.folder_stats import FolderStats
from contrastive.training.config import TrainConfig
from contrastive.views.config import ViewConfig, view_preset

#: Passes over the data a network needs per doubling of its per-image FLOPs over the
#: reference before it beats the reference given the same time (see the module docstring).
#: Every measured pair of a 1.8x candidate lost to the reference: at 17 and 21 passes, on a
#: folder of 224 px photos at 30 planned passes (26 run), and on 3,452 flowers of 128 px at
#: 42 planned passes (35 run; 64 px views through the stride-2 stem 57.3%, 48 px 61.5%), so
#: its threshold (``PASSES_PER_DOUBLING x log2(1.8)``) must lie above 42. At 60 (51 passes)
#: the 1.8x candidates still lost at 54-70 planned passes on 2 fp32 cores (one session): on
#: the same flowers 64 px views through the stride-2 stem (55.7 planned, 54 run) reached
#: 62.20 against 66.47 for 48 px views (88 planned, 87 run); on 3,409 clothing photos of
#: 400 px, 32 px views at full resolution (69.7 planned) 38.98 and 64 px views (53.9
#: planned) 37.10 against 45.70 for 48 px views, the same seed. So the 1.8x threshold lies
#: above 70 planned passes: 90 puts it at 76 (the 2.2x quarter-width ResNet-18 at 102; on
#: the clothing photos it tied the 48 px plan at 52-60 passes, 45.2 against 44.4 on two
#: seeds). Above both thresholds the two ways to spend the cost tied: on the same flowers at
#: ~100 passes (native bf16) the 2.2x ResNet-18 at 48 px and the 1.8x ResNet-10 at 64 px
#: reached 64.3 / 64.7 (two seeds each). Below the threshold capacity did not pay at 40
#: minutes either: on CIFAR-10 (native bf16) the 2.2x quarter-width ResNet-18 at 46 passes
#: reached 68.38 against the ResNet-10's 69.28 at 85 passes in the same session.
PASSES_PER_DOUBLING = 90.0
#: A pass counts at most this many images (about CIFAR-10's 50,000) and at least
#: ``MIN_PASS_IMAGES``: repeating a tiny folder many times is not new data, so a network
#: is only worth its cost once it has seen enough images in all.
PASS_IMAGES = 50_000
MIN_PASS_IMAGES = 5_000
#: The cheapest network worth training, against which costs are counted: the quarter-width
#: ResNet-10 (one block per stage), small-image stem, 24 px views. On CIFAR-10 in 4 minutes
#: on 2 fp32 cores it reached 48.6% at 2.1 passes where the quarter-width ResNet-18 (the
#: CPU recipe, 2.2x its FLOPs) reached 44.8% at 1.3 passes (``benchmarks/README.md``).
REFERENCE = ("resnet10_quarter", 24, 1)
#: The candidate measured first, which prices the others by their FLOPs: the reference on
#: CPUs; on GPUs, where small networks are bound by kernel launches rather than FLOPs, a
#: full-width ResNet-18 on 32 px views.
ANCHORS = {"cpu": REFERENCE, "cuda": ("resnet18", 32, 1)}
#: How per-image time grew with FLOPs on the 2-core CPU where the pass thresholds above were
#: measured: ``time ~ FLOPs ** (1 / FLOPS_PER_TIME_EXPONENT)`` (``benchmarks/step_rates.py``,
#: six candidates from 1.8x to 61x the reference's FLOPs: exponents 0.56-0.82, median 0.63).
#: A candidate that takes ``t`` times the cheapest one's time per image costs at most
#: ``t ** FLOPS_PER_TIME_EXPONENT`` in the FLOPs the thresholds count: on a CPU that is about
#: its FLOPs ratio (nothing changes there); on a GPU bound by kernel launches, where a
#: full-width ResNet-18 at 32 px (61x the FLOPs) took 1.4-2.1x the time, it is far less. On
#: one H200 at 3 minutes that network (47 passes) reached 74.52% where the quarter-width
#: ResNet-18 that FLOPs alone planned (66 passes) reached 70.36%; with this rule the plan
#: became a full-width ResNet-18 at 24 px (probed at 1.2x the cheapest candidate's time, 67
#: passes): 74.68% (``benchmarks/README.md``, "GPU plan").
FLOPS_PER_TIME_EXPONENT = 1.6
#: Narrowest hidden layer of the projection head. A head as narrow as a small backbone's
#: features starves the loss: on CIFAR-10 (2 cores, quarter width, 780 steps, kNN with a
#: 20k bank) hidden widths 128 / 512 / 1024 / 2048 reached 48.1 (two seeds) / 48.8 / 49.4
#: (two seeds) / 50.1, for under 3% more work per step (2 x 128 x 2048 multiply-adds per
#: view against ~21M in the quarter-width network at 24 px); in 3 minutes 128 -> 2048 gave
#: 48.7 -> 51.1, in 10 minutes 60.9 -> 60.9 (the gain is in short runs; nothing is lost in
#: long ones). 2048 is SimCLR's own width.
PROJECTION_HIDDEN_WIDTH = 2048
#: ResNet widths, cheapest first, and working sizes (feature map side after the stem).
RESNETS = ("resnet10_quarter", "resnet18_quarter", "resnet18_half", "resnet18", "resnet50")
WORKING_SIZES = (24, 32, 48, 64)
#: View sizes tried for networks with their own stem (not ResNets).
OTHER_VIEW_SIZES = (32, 64, 96, 128, 160, 224)
#: View side at which FLOPs are counted (and then scaled by area).
COUNT_SIZE = 64
#: Share of the budget left after planning that trains: the rest is the health sample,
#: checkpoints, the projector's sample, export and the deadline's reserve. A 1-minute run
#: trained 44 s of the 49 s left after start-up, a 10-minute one 582 of ~589 s: conservative
#: on long runs, where the pass thresholds above were measured with it.
TRAINING_SHARE = 0.9
#: Fewest optimiser steps a run should get: below it the batch is halved, down to
#: ``MIN_PLANNED_BATCH``. On CIFAR-10 on 2 fp32 cores in 1 minute, 72 steps of 128 images
#: reached 32.6% kNN top-1, 144 steps of 64 38.9%, 574 steps of 32 39.8%; in 4 minutes 436
#: steps of 128 and 1,027 of 64 tied (45.4 / 45.5), and at ~1,000 steps of 128 (3 minutes,
#: bf16) batch 64 lost 1.4 points: early on, updates count more than negatives per update.
MIN_STEPS = 400
MIN_PLANNED_BATCH = 32
#: The cache keeps at most this multiple of the views' side: crops of 8% of the area still
#: hold 0.57 of the view's side in real pixels. On STL-10 (96 px images, 48 px views, 10
#: minutes) a 96 px cache gave 64.30 against 62.80 from 64 px (4/3 of the views).
STORED_VIEW_RATIO = 2.0
#: Whole images are evaluated at ``EVAL_VIEW_RATIO`` x the views' side (FixRes: crops show
#: objects larger than whole images do), and up to ``DETAILED_EVAL_VIEW_RATIO`` x where the
#: images have those pixels. STL-10 at 10 minutes, one run evaluated at 64 / 72 / 80 / 96
#: px: 62.8 / 62.5 / 64.0 / 63.4; CIFAR-10 (32 px images, 24 px views) evaluated above its
#: own pixels lost (61.86 at 32 px, 60.73 / 61.53 at 36 / 40).
EVAL_VIEW_RATIO = 4 / 3
DETAILED_EVAL_VIEW_RATIO = 5 / 3
#: Passes after which crops of 8-100% (SimCLR's) replace 20-100%; ``DETAILED_CROP_PASSES``
#: where the cache holds ``STORED_VIEW_RATIO`` x the views' side. On CIFAR-10 (cache 4/3 of
#: the views) 8% crops lost 0.76 at 39 passes and 0.73 at 75 (40 minutes: 68.36 against
#: 69.09 at 79 passes); on STL-10 (cache twice the views) they gained
#: 1.7 at 77 passes (one seed), and on 3,452 flowers of 128 px (a 64 px cache, 5 minutes,
#: ~40 planned passes) they held level: 58.03 against two seeds of 20-100%, 57.69 / 55.26.
MANY_PASSES = 100
DETAILED_CROP_PASSES = 40
#: Share of host memory the decoded image cache may take.
CACHE_MEMORY_SHARE = 0.5
#: First-run cache decoding per core where the folder's own files were not timed
#: (``FolderStats.decode_seconds``): a fixed cost per file (open, header, resize; measured
#: 6.1 s for 21,600 64 px JPEGs on 2 cores) plus a JPEG decoding rate in pixels/s.
DECODE_SECONDS_PER_FILE = 0.5e-3
DECODE_PIXELS_PER_SECOND = 150e6
#: Sample sizes are rounded up to these steps per power of ten, so that runs whose probes
#: differ a little choose the same sample (and reuse its decoded cache).
SAMPLE_STEPS = (1, 2, 3, 5, 7)
#: A sample must leave out at least a tenth of the folder to be worth its own cache.
SAMPLE_MAX_SHARE = 0.9
#: Largest share of the budget that decoding the health sample (before training) or the
#: projector's sample (after it) may take, each; neither gets fewer than
#: ``MIN_MEASURE_SAMPLE`` images. 2,048 large photos take ~20 s to decode on one core: a
#: third of a 1-minute budget (1,000 photos of 3000 x 2000 px: 9.7 s before training and
#: 18.6 s after it).
MEASURE_DECODE_SHARE = 0.03
MIN_MEASURE_SAMPLE = 256


@dataclass(frozen=True)
class Candidate:
    """A network at one view size: what the planner compares.

    Attributes:
        backbone: Backbone name.
        view_size: Side of the training views.
        stem_stride: 1 or 2 (the small-image stem), 4 (a ResNet's own ImageNet stem), or
            0 (a network that is not a ResNet: its own stem).
    """

    backbone: str
    view_size: int
    stem_stride: int

    @property
    def backbone_config(self) -> BackboneConfig:
        small = self.stem_stride in (1, 2)
        return BackboneConfig(
            self.backbone, small_image_stem=small, stem_stride=self.stem_stride if small else 1
        )

    def describe(self) -> str:
        return f"{self.backbone} ({STEMS[self.stem_stride]}) on {self.view_size} px views"


#: The stems by :attr:`Candidate.stem_stride`, in words for the plan and its errors.
STEMS = {
    1: "small-image stem",
    2: "small-image stem with stride 2",
    4: "ImageNet stem",
    0: "its own stem",
}


def stem_stride_of(backbone: BackboneConfig) -> int:
    """The backbone's :attr:`Candidate.stem_stride`: 1 or 2 (small-image stem), 4 (a
    ResNet's ImageNet stem) or 0 (a network that is not a torchvision ResNet)."""
    if not is_torchvision_resnet(backbone.name):
        return 0
    return backbone.stem_stride if backbone.small_image_stem else 4


def describe_backbone(backbone: BackboneConfig) -> str:
    """The backbone in words, e.g. ``resnet50, ImageNet stem``."""
    return f"{backbone.name}, {STEMS[stem_stride_of(backbone)]}"


@dataclass(frozen=True)
class Decision:
    """One planned setting and why."""

    setting: str
    value: Any
    reason: str


@dataclass(frozen=True)
class Plan:
    """The planned recipe.

    Attributes:
        candidate: The chosen network and view size.
        batch_size: Images per step and process.
        stored_size: Side of the decoded cache images.
        eval_size: Side of whole images at evaluation and embedding.
        images_per_second: Training rate of the candidate (measured or estimated).
        passes: Planned passes over ``min(images, PASS_IMAGES)`` images.
        decisions: Every setting with its reason, in print order.
        config: The planned configuration (the base with planned fields replaced).
    """

    candidate: Candidate
    batch_size: int
    stored_size: int
    eval_size: int
    images_per_second: float
    passes: float
    decisions: tuple[Decision, ...]
    config: TrainConfig

    def lines(self) -> list[str]:
        """The printout: one line per decision."""
        return [f"  {d.setting} = {_shown(d.value)}: {d.reason}" for d in self.decisions]

    def as_dict(self) -> dict[str, str]:
        """``setting -> "value: reason"``, saved in ``config.yaml``."""
        return {d.setting: f"{_shown(d.value)}: {d.reason}" for d in self.decisions}


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "-".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


#: ``(candidate, batch_size, stored_size) -> images/s``, or None where it was not measured
#: (the probe's time is spent): the planner then prices the candidate with its rate model.
ImagesPerSecond = Callable[[Candidate, int, int], float | None]


def plan_recipe(
    stats: FolderStats,
    hardware: Hardware,
    budget_seconds: float,
    base: TrainConfig,
    fixed: Iterable[str],
    images_per_second: ImagesPerSecond,
    decoded: Callable[[int], bool] | None = None,
) -> Plan:
    """Plans the recipe for ``budget_seconds`` of training on ``stats``' folder.

    Args:
        stats: The folder, from its headers.
        hardware: The machine.
        budget_seconds: The run's budget left when planning (the whole budget less what
            start-up, scanning and the probes took).
        base: The configuration to plan into (a recipe with the user's flags applied).
        fixed: Dotted paths of the settings the user set (``views.input_size``,
            ``backbone.name``...): kept as they are and planned around.
        images_per_second: ``(candidate, batch_size, stored_size) -> images/s`` of a
            training step on this hardware (measured: :func:`measured_rate`), or None for a
            candidate not measured; the first candidate asked must be measured.
        decoded: ``stored_size -> whether every image is already in the decoded cache at
            that size`` (then nothing is decoded before training); None: nothing is.

    Returns:
        The plan, whose ``config`` is ``base`` with every planned setting filled in.

    Raises:
        ContrastiveError: If the fixed settings leave no network to plan (e.g. a stem
            stride for a backbone without a small-image stem).
    """
    situation = _Situation.of(stats, hardware, budget_seconds, base, frozenset(fixed))
    choice = _choose(situation, images_per_second)
    already = decoded is not None and decoded(situation.stored_size(choice.candidate))
    situation = _with_decoding(situation, choice.images_per_second, already)
    situation = _with_enough_steps(situation, choice.images_per_second)
    network, decisions = _network_decisions(situation, choice)
    training, more = _training_decisions(situation, choice)
    measure_samples, measure_decisions = _measure_sample_decisions(situation)
    more = [*more, *measure_decisions]
    views = _planned_views(situation, network["input_size"], training["crop_scale"])
    config = base.with_overrides(
        views=replace(views, eval_input_size=network["eval_input_size"]),
        backbone=choice.candidate.backbone_config,
        stored_size=network["stored_size"],
        batch_size=situation.batch_size,
        optim=replace(base.optim, base_learning_rate=training["lr"]),
        loss=replace(base.loss, temperature=training["temperature"]),
        method=replace(base.method, projection_hidden_dim=training["projection_hidden_dim"]),
        max_images=base.max_images if situation.is_fixed("max_images") else situation.sample_size,
        **measure_samples,
    )
    return Plan(
        choice.candidate,
        situation.batch_size,
        network["stored_size"],
        network["eval_input_size"],
        choice.images_per_second,
        situation.passes(choice.images_per_second),
        (*decisions, *more),
        config,
    )


@dataclass(frozen=True)
class _Situation:
    """What the planner knows before choosing: folder, machine, base, budget, fixed settings."""

    stats: FolderStats
    hardware: Hardware
    base: TrainConfig
    fixed: frozenset[str]
    batch_size: int
    batch_reason: str
    decode_seconds: float
    train_seconds: float
    budget_seconds: float
    decode_seconds_per_image: float
    decode_note: str = ""
    sample_size: int | None = None

    @classmethod
    def of(
        cls,
        stats: FolderStats,
        hardware: Hardware,
        budget_seconds: float,
        base: TrainConfig,
        fixed: frozenset[str],
    ) -> _Situation:
        batch, reason = _batch_size(stats, hardware, base, fixed)
        if stats.decode_seconds is not None:
            per_file = stats.decode_seconds
        else:
            # Large JPEGs decode at up to 1/8 scale per side (PIL's draft), never below ~128 px.
            pixels = max(stats.median_pixels / 64, min(stats.median_pixels, 128**2))
            per_file = DECODE_SECONDS_PER_FILE + pixels / DECODE_PIXELS_PER_SECOND
        per_image = per_file / hardware.cpu_cores
        images = stats.num_images
        sample = base.max_images if "max_images" in fixed else None
        if sample is not None and sample < images:
            images = sample
        else:
            sample = None
        decode = images * per_image
        train = _train_seconds(budget_seconds, decode)
        return cls(
            stats,
            hardware,
            base,
            fixed,
            batch,
            reason,
            decode,
            train,
            budget_seconds,
            per_image,
            sample_size=sample,
        )

    @property
    def pass_images(self) -> int:
        return min(max(self.stats.num_images, MIN_PASS_IMAGES), PASS_IMAGES)

    def passes(self, images_per_second: float) -> float:
        """Passes over ``pass_images`` at this rate per process (every process trains)."""
        processes = max(self.hardware.devices, 1)
        return images_per_second * processes * self.train_seconds / self.pass_images

    def stored_size(self, candidate: Candidate) -> int:
        return _stored_size(candidate, self.stats, self.base, self.fixed, self.hardware)

    def is_fixed(self, setting: str) -> bool:
        return setting in self.fixed


def _train_seconds(budget_seconds: float, decode_seconds: float) -> float:
    return max(budget_seconds * TRAINING_SHARE - min(decode_seconds, 0.5 * budget_seconds), 1.0)


@dataclass(frozen=True)
class _Choice:
    """The chosen candidate with its measured rate, its time per image over the cheapest
    network's, the passes its cost needs, and the passes the reference would get."""

    candidate: Candidate
    images_per_second: float
    time_ratio: float
    needed_passes: float
    reference_passes: float


def _needed_passes(flops_ratio: float, time_ratio: float) -> float:
    """Passes a candidate needs to beat the cheapest network, from its cost over it.

    The cost is the FLOPs ratio, or less where this hardware runs the candidate much faster
    than its FLOPs say (see :data:`FLOPS_PER_TIME_EXPONENT`).
    """
    cost = min(flops_ratio, max(time_ratio, 1.0) ** FLOPS_PER_TIME_EXPONENT)
    return PASSES_PER_DOUBLING * max(math.log2(cost), 0.0)


def _choose(situation: _Situation, images_per_second: ImagesPerSecond) -> _Choice:
    """The costliest candidate that still gets the passes its cost needs, else the cheapest.

    Two measurements (the anchor and the cheapest candidate; one on CPUs, where they are the
    same) fit how time per image grows with FLOPs here, which prices every other candidate;
    a candidate that looks affordable is measured before it is chosen.
    """
    candidates = _candidates(situation.stats, situation.hardware, situation.base, situation.fixed)
    if not candidates:
        raise ContrastiveError(
            f"the fixed settings leave no network to plan: {_why_none(situation)}"
        )
    measured: dict[Candidate, float | None] = {}

    def measured_or_none(candidate: Candidate) -> float | None:
        if candidate not in measured:
            stored = situation.stored_size(candidate)
            measured[candidate] = images_per_second(candidate, situation.batch_size, stored)
        return measured[candidate]

    # Costliest first; among equal cost, the one that sees more of the image's detail.
    ordered = sorted(candidates, key=lambda c: (-candidate_flops(c), -c.view_size))
    cheapest = ordered[-1]
    # Costs count from the cheapest network the user's settings leave: with --backbone fixed
    # to a wider network, its stride-2 stem at twice the view size costs about what its
    # full-resolution stem does and must not be priced against a network the user excluded.
    floor_flops = max(candidate_flops(cheapest), _reference_flops())
    anchor_flops = candidate_flops(Candidate(*ANCHORS[situation.hardware.accelerator]))
    anchor = min(ordered, key=lambda c: abs(math.log(candidate_flops(c) / anchor_flops)))
    anchor_rate = measured_or_none(anchor)
    if anchor_rate is None:
        raise ValueError("images_per_second must measure the first candidate it is asked for")
    points = [(candidate_flops(anchor), anchor_rate)]
    cheapest_rate = measured_or_none(cheapest)
    if cheapest_rate is not None:
        points.append((candidate_flops(cheapest), cheapest_rate))
    estimate = _rate_model(*points)

    def measure(candidate: Candidate) -> float:
        """Measured images/s, or the rate model's where the probe's time is spent."""
        rate = measured_or_none(candidate)
        return estimate(candidate) if rate is None else rate

    def needed(candidate: Candidate, rate: float) -> float:
        return _needed_passes(candidate_flops(candidate) / floor_flops, measure(cheapest) / rate)

    def affordable(candidate: Candidate, rate: float) -> bool:
        return situation.passes(rate) >= needed(candidate, rate)

    chosen = next(
        (
            c
            for c in ordered
            if affordable(c, measured.get(c) or estimate(c)) and affordable(c, measure(c))
        ),
        cheapest,
    )
    rate = measure(chosen)
    return _Choice(
        chosen,
        rate,
        measure(cheapest) / rate,
        needed(chosen, rate),
        situation.passes(estimate(Candidate(*REFERENCE))),
    )


def _rate_model(
    first: tuple[float, float], second: tuple[float, float] | None = None
) -> Callable[[Candidate], float]:
    """Images/s of any candidate from one or two measured ``(FLOPs, images/s)`` points.

    Time per image is taken to grow as a power of FLOPs fitted through the two points
    (between 0: bound by launches, and 1: bound by arithmetic); with one point, in
    proportion to FLOPs.
    """
    (flops_a, rate_a), (flops_b, rate_b) = first, second or first
    exponent = 1.0
    if flops_a != flops_b and rate_a > 0 and rate_b > 0:
        exponent = math.log(rate_b / rate_a) / math.log(flops_a / flops_b)
        exponent = min(max(exponent, 0.0), 1.0)

    def rate(candidate: Candidate) -> float:
        return rate_a * (flops_a / candidate_flops(candidate)) ** exponent

    return rate


#: Settings that change the network's work per image: the plan says what they cost.
_SHAPE_SETTINGS = frozenset(
    {"views.input_size", "backbone.name", "backbone.small_image_stem", "backbone.stem_stride"}
)


def _candidates(
    stats: FolderStats, hardware: Hardware, base: TrainConfig, fixed: frozenset[str]
) -> list[Candidate]:
    """Every (network, view size, stem) the fixed settings allow and the cache can hold."""
    names = (base.backbone.name,) if "backbone.name" in fixed else RESNETS
    result = []
    for name in names:
        if not is_torchvision_resnet(name):
            sizes = (base.views.input_size,) if "views.input_size" in fixed else OTHER_VIEW_SIZES
            result += [Candidate(name, size, 0) for size in sizes]
            continue
        strides = _strides(base, fixed)
        for stride in strides:
            if "views.input_size" in fixed:
                sizes: Iterable[int] = (base.views.input_size,)
            else:
                sizes = (working * stride for working in WORKING_SIZES)
            for size in sizes:
                if size % stride or size // stride < 8:
                    continue
                # Views larger than the images add work, not detail (a strided stem pays off
                # only where the images hold it): on a GPU, where time grows slowly with
                # FLOPs, upsampled views would otherwise look like cheap capacity. Only the
                # smallest working size is reached by upsampling, where the stem leaves no
                # other way to it: the stride-1 stem always (20 px images get 24 px views),
                # and a stem the user fixed (the ImageNet stem, stride 4, gets 96 px views
                # of 32 px images) - else no network would be left to train.
                native = stats.short_side_median
                only_way = stride == 1 or len(strides) == 1
                largest = max(native, WORKING_SIZES[0] * stride) if only_way else native
                if "views.input_size" not in fixed and size > largest:
                    continue
                result.append(Candidate(name, size, stride))
    cap = _cache_side_cap(stats, hardware)
    return [
        c
        for c in result
        if (c.view_size <= cap or "views.input_size" in fixed)
        and not math.isnan(candidate_flops(c))
    ]


def _why_none(situation: _Situation) -> str:
    """Why :func:`_candidates` left nothing, naming the flags that decide it."""
    base, fixed, stats = situation.base, situation.fixed, situation.stats
    name = base.backbone.name if "backbone.name" in fixed else RESNETS[0]
    size = base.views.input_size if "views.input_size" in fixed else None
    if not is_torchvision_resnet(name):
        if size is not None:
            return f"--backbone {name} does not take --input-size {size} views"
        return (
            f"--backbone {name} takes none of the view sizes tried "
            f"({', '.join(map(str, OTHER_VIEW_SIZES))} px) that the cache's memory holds"
        )
    stride = min(_strides(base, fixed))  # the stem that leaves the largest working size
    stem = f"the {STEMS[stride]}" + (" (stride 4 with its max-pool)" if stride == 4 else "")
    if size is not None and size % stride:
        return f"--input-size {size} is not a multiple of {stem}; give a multiple of {stride}"
    if size is not None:
        return (
            f"--input-size {size} leaves a working size of {size // stride} px after {stem}, "
            f"below the 8 px a ResNet needs; give --input-size {8 * stride} or more"
        )
    cap = _cache_side_cap(stats, situation.hardware)
    return (
        f"{stem} needs views of {WORKING_SIZES[0] * stride} px, and the decoded cache of "
        f"{stats.num_images:,} images holds at most {cap} px in its share of memory; give "
        "--input-size to train at a size anyway"
    )


def _strides(base: TrainConfig, fixed: frozenset[str]) -> tuple[int, ...]:
    if "backbone.small_image_stem" in fixed and not base.backbone.small_image_stem:
        return (4,)
    if "backbone.stem_stride" in fixed:
        return (base.backbone.stem_stride,)
    return (1, 2)


def _cache_side_cap(stats: FolderStats, hardware: Hardware) -> int:
    """Largest stored side whose cache fits into its share of memory."""
    per_image = CACHE_MEMORY_SHARE * hardware.memory_bytes / max(stats.num_images, 1) / 3
    return int(math.sqrt(per_image)) // 8 * 8


def _stored_size(
    candidate: Candidate,
    stats: FolderStats,
    base: TrainConfig,
    fixed: frozenset[str],
    hardware: Hardware,
) -> int:
    if "stored_size" in fixed and base.stored_size:
        return base.stored_size
    # Below the size the views want, the cache keeps every pixel the images have (28 px
    # images are stored at 28, not rounded down to 24).
    native = max(stats.short_side_median, 8)
    wanted = _round8(candidate.view_size * STORED_VIEW_RATIO)
    stored = max(candidate.view_size, min(wanted, native))
    return min(stored, max(_cache_side_cap(stats, hardware), candidate.view_size))


def _eval_size(view_size: int, native: int) -> int:
    detailed = min(_round8(view_size * DETAILED_EVAL_VIEW_RATIO), native)
    return max(_round8(view_size * EVAL_VIEW_RATIO), detailed)


def _round8(value: float) -> int:
    return max(8, int(round(value / 8)) * 8)


def _batch_size(
    stats: FolderStats, hardware: Hardware, base: TrainConfig, fixed: frozenset[str]
) -> tuple[int, str]:
    if "batch_size" in fixed:
        return base.batch_size, ""  # replaced by the steps the budget gives
    if hardware.on_gpu:
        memory = min(g.memory_bytes for g in hardware.gpus) if hardware.gpus else 0
        batch = 512 if memory >= 16 * 2**30 else 256
        reason = f"a GPU runs large batches at full speed ({batch} fits {memory / 2**30:.0f} GiB)"
    else:
        batch = 128
        reason = "on CPUs twice the updates of batch 256 in the same time (+2.1 points)"
    # At least 8 steps per epoch and process, so an epoch is not one batch.
    limit = stats.num_images // (8 * max(hardware.devices, 1))
    if batch > limit:
        batch = max(16, 2 ** int(math.log2(max(limit, 1))))
        batch = min(batch, max(2, stats.num_images // max(hardware.devices, 1)))
        reason = f"{stats.num_images:,} images: at least 8 steps per epoch"
        if batch > limit:
            # The floor of 16 wins: a smaller batch leaves each view too few negatives.
            reason = (
                f"{stats.num_images:,} images: the smallest batch planned, "
                "fewer than 8 steps per epoch"
            )
    return batch, reason


def _with_decoding(
    situation: _Situation, images_per_second: float, already_decoded: bool
) -> _Situation:
    """What decoding costs before training: nothing where the cache holds the folder; a
    seeded sample where the budget shows fewer images than the folder holds.

    A run shows ``rate x (T - decoding)`` images, and decoding ``n`` of them costs ``n x d``
    seconds, so the budget shows at most ``rate x T / (1 + rate x d)`` images; decoding more
    only takes time from training. (Tiny ImageNet, 100,000 images, 1 minute on 2 fp32
    cores: decoding all took 17 s of the minute and the run saw 4,128 images.)
    """
    base = situation.base
    # Without the cache nothing is decoded ahead; a sample the user set is priced already.
    if situation.is_fixed("max_images") or not (
        base.cache_images and base.view_pipeline == "batched"
    ):
        return situation
    if already_decoded:
        return replace(
            situation,
            decode_seconds=0.0,
            train_seconds=_train_seconds(situation.budget_seconds, 0.0),
            decode_note="decoded by an earlier run: reused",
        )
    rate = images_per_second * max(situation.hardware.devices, 1)
    training = situation.budget_seconds * TRAINING_SHARE
    shown = rate * training / (1 + rate * situation.decode_seconds_per_image)
    images = situation.stats.num_images
    sample = _sample_step(max(shown, MIN_PASS_IMAGES))
    if sample >= images:
        # Near the folder's size the steps are too coarse: two significant digits.
        power = 10 ** max(int(math.log10(max(shown, 1))) - 1, 0)
        sample = max(math.ceil(shown / power) * power, MIN_PASS_IMAGES)
        if sample >= SAMPLE_MAX_SHARE * images:
            return situation
    decode = sample * situation.decode_seconds_per_image
    note = (
        f"the budget shows about {shown:,.0f} of the {situation.stats.num_images:,} images: "
        f"a seeded sample of {sample:,} is decoded (~{decode:.0f} s; all: "
        f"~{situation.decode_seconds:.0f} s)"
    )
    return replace(
        situation,
        decode_seconds=decode,
        train_seconds=_train_seconds(situation.budget_seconds, decode),
        decode_note=note,
        sample_size=sample,
    )


def _sample_step(images: float) -> int:
    """``images`` rounded up to the next of ``SAMPLE_STEPS`` x a power of ten."""
    power = 10 ** max(int(math.floor(math.log10(max(images, 1)))), 0)
    return next(step * power for step in (*SAMPLE_STEPS, 10) if step * power >= images)


def _with_enough_steps(situation: _Situation, images_per_second: float) -> _Situation:
    """Halves the batch while the budget gives fewer than ``MIN_STEPS`` steps (a batch the
    user set is kept); the measured images/s are taken to hold at the smaller batch."""
    batch = situation.batch_size

    def steps(size: int) -> float:
        return images_per_second * situation.train_seconds / size

    if situation.is_fixed("batch_size"):
        # "set by you" is the decision's own prefix; the reason says what the batch buys.
        reason = f"the budget gives ~{steps(batch):,.0f} steps of {batch}"
        return replace(situation, batch_reason=reason)
    planned = batch
    while planned > MIN_PLANNED_BATCH and steps(planned) < MIN_STEPS:
        planned //= 2
    if planned == batch:
        return situation
    reason = (
        f"the budget gives ~{steps(batch):.0f} steps of {batch}; {steps(planned):.0f} steps of "
        f"{planned} instead (early on, updates count more than negatives per update)"
    )
    return replace(situation, batch_size=planned, batch_reason=reason)


@functools.cache
def _feature_width(backbone: BackboneConfig) -> int:
    """Width of the backbone's pooled features (built on the meta device: no memory)."""
    with torch.device("meta"):
        return build_backbone(backbone)[1]


@functools.cache
def _counted_flops(backbone: BackboneConfig, size: int) -> float:
    """Forward FLOPs of one ``size`` px view through the backbone, counted by PyTorch on the
    meta device (shapes only: nothing is computed or allocated); NaN for a network that does
    not take this size (a ViT built for 224 px)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model, _ = build_backbone(backbone)
        image = torch.zeros(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model.eval()(image)
    except (RuntimeError, ValueError, AssertionError):
        return math.nan
    return float(counter.get_total_flops())


def candidate_flops(candidate: Candidate) -> float:
    """Forward FLOPs of one view of ``candidate``."""
    if candidate.stem_stride == 0:
        return _counted_flops(candidate.backbone_config, candidate.view_size)
    # A ResNet's convolutions cost in proportion to the area of their feature maps.
    scale = (candidate.view_size / COUNT_SIZE) ** 2
    return _counted_flops(candidate.backbone_config, COUNT_SIZE) * scale


def _reference_flops() -> float:
    return candidate_flops(Candidate(*REFERENCE))


#: Decisions printed under a short name, and the settings (dotted paths) each stands for.
_DECISION_SETTINGS = {
    "backbone": ("backbone.name",),
    "stem": ("backbone.stem_stride", "backbone.small_image_stem"),
    "lr": ("optim.base_learning_rate",),
    "temperature": ("loss.temperature",),
}


def _method_temperature(name: str) -> float:
    """The temperature a method's authors use (:attr:`default_temperature`)."""
    from contrastive.methods import METHODS

    return float(METHODS[name].default_temperature)


def _decision(situation: _Situation, setting: str, value: Any, reason: str) -> Decision:
    fixed = any(map(situation.is_fixed, _DECISION_SETTINGS.get(setting, (setting,))))
    if not fixed:
        return Decision(setting, value, reason)
    # Starting weights fix the network whether or not its flags were given.
    weights = situation.base.init_weights and setting in ("backbone", "stem")
    return Decision(
        setting, value, f"{'kept for --init-weights' if weights else 'set by you'}; {reason}"
    )


def _passes_of(situation: _Situation) -> str:
    """What a pass counts, where it is not the folder as it is."""
    images, counted = situation.stats.num_images, situation.pass_images
    if images < counted:
        return (
            f"passes of {counted:,} images (the {images:,} images repeated: a pass counts "
            f"at least {MIN_PASS_IMAGES:,})"
        )
    if images > counted:
        return (
            f"passes of {counted:,} images (a pass counts at most {PASS_IMAGES:,} of the "
            f"{images:,})"
        )
    return f"passes over {counted:,} images"


def _backbone_reason(situation: _Situation, choice: _Choice) -> str:
    """Rate, passes, and what the network's cost needs (or what a fixed setting costs)."""
    passes = situation.passes(choice.images_per_second)
    cost = candidate_flops(choice.candidate) / _reference_flops()
    time = f" at {choice.time_ratio:.1f}x its time per image" if choice.time_ratio > 1.05 else ""
    why = (
        f"{choice.images_per_second:,.0f} images/s -> {passes:.1f} {_passes_of(situation)} "
        f"in {situation.train_seconds:.0f} s of training"
    )
    if situation.fixed & _SHAPE_SETTINGS:
        # What the user's choice costs: the same budget on the cheapest network.
        return why + (
            f"; {cost:.1f}x the cheapest network's work per image, which would get "
            f"{choice.reference_passes:.1f} passes"
        )
    if choice.needed_passes > 0:
        return (
            why + f"; {cost:.1f}x the reference's FLOPs{time} needs >= "
            f"{choice.needed_passes:.0f} passes"
        )
    if cost > 1.05:
        return why + (
            f"; {cost:.1f}x the reference's FLOPs in no more time per image here: "
            "the capacity costs no passes"
        )
    return why + "; the cheapest network worth training (more passes beat more capacity)"


def _network_decisions(
    situation: _Situation, choice: _Choice
) -> tuple[dict[str, int], list[Decision]]:
    """Network, stem, view, stored and evaluation sizes, with their reasons."""
    chosen, stats, fixed = choice.candidate, situation.stats, situation.fixed
    why = _backbone_reason(situation, choice)
    decisions = [_decision(situation, "backbone", chosen.backbone, why)]
    stem_name = STEMS[chosen.stem_stride]
    if chosen.stem_stride:
        detail = (
            f"{chosen.view_size} px views"
            if "views.input_size" in fixed
            else f"the images ({stats.short_side_median} px) hold detail at {chosen.view_size} px"
        )
        stem_reason = {
            1: f"{chosen.view_size} px views keep their full resolution after the stem",
            2: f"{detail}; stride 2 costs what {chosen.view_size // 2} px views cost",
            4: "the ResNet's ImageNet stem: a 7x7 stride-2 conv and a max-pool",
        }[chosen.stem_stride]
        decisions.append(_decision(situation, "stem", f"stride {chosen.stem_stride}", stem_reason))
        view_reason = f"working size {chosen.view_size // chosen.stem_stride} px after the stem"
        if chosen.view_size > stats.short_side_median and "views.input_size" not in fixed:
            view_reason += (
                f"; the images' {stats.short_side_median} px are upsampled: the {stem_name} "
                "needs views this large for the smallest working size planned"
            )
    else:
        # Not a torchvision ResNet: the small-image stem (cpu-budget's) does not fit it.
        decisions.append(
            _decision(
                situation,
                "stem",
                "its own",
                f"{chosen.backbone} is not a torchvision ResNet: the small-image stem and "
                "its stride apply to ResNets only",
            )
        )
        view_reason = _own_stem_view_reason(situation, choice)
    sizes = {
        "input_size": chosen.view_size,
        "stored_size": situation.stored_size(chosen),
        "eval_input_size": situation.base.views.evaluation_size
        if "views.eval_input_size" in fixed
        else _eval_size(chosen.view_size, stats.short_side_median),
    }
    detailed = sizes["eval_input_size"] > _round8(chosen.view_size * EVAL_VIEW_RATIO)
    decisions += [
        _decision(situation, "views.input_size", sizes["input_size"], view_reason),
        _decision(
            situation,
            "stored_size",
            sizes["stored_size"],
            f"native short side {stats.short_side_median} px; crops are taken from the "
            f"decoded cache ({_decoding(situation)})",
        ),
        _decision(
            situation,
            "views.eval_input_size",
            sizes["eval_input_size"],
            ("5/3 of the views, within the images' pixels" if detailed else "4/3 of the views")
            + ": crops show objects larger than whole images do (FixRes)",
        ),
    ]
    if situation.sample_size is not None:
        decisions.append(
            _decision(
                situation,
                "max_images",
                situation.sample_size,
                situation.decode_note or "a seeded sample of the folder",
            )
        )
    return sizes, decisions


def _own_stem_view_reason(situation: _Situation, choice: _Choice) -> str:
    """Why a network with its own stem (not a ResNet) got its view size."""
    view, native = choice.candidate.view_size, situation.stats.short_side_median
    if "views.input_size" in situation.fixed:
        reason = f"{choice.candidate.backbone} on the views you set"
    else:
        # Costs count from this network's cheapest view, which is always affordable.
        tried = ", ".join(map(str, OTHER_VIEW_SIZES))
        reason = f"the largest view this budget affords of those tried ({tried} px)"
    if view > native:
        reason += f"; the images' {native} px are upsampled"
    return reason


def _decoding(situation: _Situation) -> str:
    if situation.decode_seconds == 0 and situation.decode_note:
        return situation.decode_note
    what = "the sample" if situation.sample_size is not None else "the folder"
    return f"the first run decodes {what} in ~{situation.decode_seconds:.0f} s"


def _training_decisions(
    situation: _Situation, choice: _Choice
) -> tuple[dict[str, Any], list[Decision]]:
    """Batch, learning rate, temperature, crop scale and colour, with their reasons."""
    base, batch, stats = situation.base, situation.batch_size, situation.stats
    fixed = situation.fixed
    passes = situation.passes(choice.images_per_second)
    view = choice.candidate.view_size
    detailed = situation.stored_size(choice.candidate) >= _round8(view * STORED_VIEW_RATIO)
    many = passes >= MANY_PASSES or (detailed and passes >= DETAILED_CROP_PASSES)
    features = _feature_width(choice.candidate.backbone_config)
    # 0.1 was measured on SimCLR only; another method keeps its authors' value (MoCo with the
    # distance loss collapsed at 0.1 in two 8-epoch runs and trained at 0.2).
    simclr = base.method.name == "simclr"
    planned = {
        "optim.base_learning_rate": 0.3,
        "loss.temperature": 0.1 if simclr else _method_temperature(base.method.name),
        "views.crop_scale": (0.08, 1.0) if many else (0.2, 1.0),
        "method.projection_hidden_dim": max(features, PROJECTION_HIDDEN_WIDTH),
    }
    yours = {
        "optim.base_learning_rate": base.optim.base_learning_rate,
        "loss.temperature": base.loss.temperature,
        "views.crop_scale": tuple(base.views.crop_scale),
        "method.projection_hidden_dim": base.method.projection_hidden_dim or features,
    }
    chosen = {path: yours[path] if path in fixed else planned[path] for path in planned}
    lr, temperature = chosen["optim.base_learning_rate"], chosen["loss.temperature"]
    crop, hidden = chosen["views.crop_scale"], chosen["method.projection_hidden_dim"]
    scaled = lr * batch * max(situation.hardware.devices, 1) / 256

    def beside_yours(path: str, reason: str) -> str:
        # A reason argues for the planner's value: beside another value, name that one.
        if chosen[path] == planned[path]:
            return reason
        return f"the plan's {_shown(planned[path])}: {reason}"

    decisions = [
        _decision(situation, "batch_size", batch, situation.batch_reason),
        _decision(
            situation,
            "lr",
            lr,
            f"per 256 images, scaled to {scaled:.3g} for the batch; 5% warm-up and cosine "
            "to the budget's end",
        ),
        _decision(
            situation,
            "temperature",
            temperature,
            beside_yours(
                "loss.temperature",
                "NT-Xent, sharper than SimCLR's 0.5 (+1 point at 0.1 vs 0.2)"
                if simclr
                else f"{base.method.name}'s usual value: SimCLR's 0.1 here was not measured on "
                f"{base.method.name}, and MoCo with the distance loss collapsed at 0.1",
            ),
        ),
        _decision(
            situation,
            "method.projection_hidden_dim",
            hidden,
            f"projection head {features}-{hidden}-{base.method.projection_output_dim}; "
            + beside_yours(
                "method.projection_hidden_dim",
                "a head as narrow as small features cost up to 2.4 points in short runs",
            ),
        ),
        _decision(
            situation,
            "views.crop_scale",
            crop,
            beside_yours(
                "views.crop_scale",
                _crop_reason(many, detailed),
            ),
        ),
    ]
    if stats.grayscale_fraction >= 0.9:
        decisions.append(
            Decision(
                "color",
                "no hue/saturation",
                f"{stats.grayscale_fraction:.0%} of images are grayscale",
            )
        )
    return {
        "lr": lr,
        "temperature": temperature,
        "crop_scale": crop,
        "projection_hidden_dim": hidden,
    }, decisions


def _crop_reason(many: bool, detailed: bool) -> str:
    if not many:
        return "few passes: tiny crops are mostly noise"
    if detailed:
        return "enough passes, and a cache twice the views' side: the usual 8-100% crops"
    return "many passes: the usual 8-100% crops"


def _measure_sample_decisions(
    situation: _Situation,
) -> tuple[dict[str, int], list[Decision]]:
    """Smaller health and projector samples where decoding them would take more than
    ``MEASURE_DECODE_SHARE`` of the budget (large photos, short budgets)."""
    one_core = situation.decode_seconds_per_image * situation.hardware.cpu_cores
    affordable = MEASURE_DECODE_SHARE * situation.budget_seconds / max(one_core, 1e-9)
    planned, decisions = {}, []
    for setting, what in (
        ("health_sample_size", "the health measures' sample"),
        ("projector_sample_size", "the projector's sample"),
    ):
        size = min(getattr(situation.base, setting), situation.stats.num_images)
        if situation.is_fixed(setting) or size <= max(affordable, MIN_MEASURE_SAMPLE):
            continue
        smaller = max(MIN_MEASURE_SAMPLE, int(affordable) // 64 * 64)
        planned[setting] = smaller
        decisions.append(
            Decision(
                setting,
                smaller,
                f"decoding {size:,} images for {what} would take ~{size * one_core:.0f} s "
                f"on one core ({1000 * one_core:.1f} ms per image)",
            )
        )
    return planned, decisions


def _planned_views(
    situation: _Situation, view_size: int, crop_scale: tuple[float, float]
) -> ViewConfig:
    """Augmentation strengths for the view size and colour, keeping the fields the user set."""
    preset = view_preset("cifar") if view_size <= 64 else view_preset("simclr")
    if situation.stats.grayscale_fraction >= 0.9:
        preset = replace(preset, saturation=0.0, hue=0.0, grayscale_probability=0.0)
    kept = {
        path.split(".", 1)[1]: getattr(situation.base.views, path.split(".", 1)[1])
        for path in situation.fixed
        if path.startswith("views.")
    }
    return replace(preset, **{"input_size": view_size, "crop_scale": crop_scale, **kept})
