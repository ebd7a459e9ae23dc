"""The recipe planner: rules over folder, hardware and budget, tested against described
machines (no GPU needed) and throughputs proportional to FLOPs (CPUs) or nearly flat in them
(a GPU bound by kernel launches)."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from contrastive.backbone_config import BackboneConfig
from contrastive.errors import ContrastiveError
from contrastive.hardware import GpuInfo, Hardware
from contrastive.planning import FolderStats, plan_recipe
from contrastive.planning.planner import (
    DETAILED_CROP_PASSES,
    DETAILED_EVAL_VIEW_RATIO,
    EVAL_VIEW_RATIO,
    FLOPS_PER_TIME_EXPONENT,
    MANY_PASSES,
    MIN_PLANNED_BATCH,
    MIN_STEPS,
    PASSES_PER_DOUBLING,
    REFERENCE,
    SAMPLE_STEPS,
    STORED_VIEW_RATIO,
    Candidate,
    _needed_passes,
    _rate_model,
    candidate_flops,
    describe_backbone,
)
from contrastive.recipes import cpu_budget_recipe
from contrastive.training.config import TrainConfig

CPU = Hardware("cpu", cpu_cores=2, bf16=True, memory_bytes=24 * 2**30)
H200 = Hardware(
    "cuda",
    cpu_cores=16,
    bf16=True,
    memory_bytes=128 * 2**30,
    gpus=(GpuInfo("NVIDIA H200", 141 * 2**30, (9, 0)),),
)


def folder(images: int, side: int, grayscale: float = 0.0) -> FolderStats:
    return FolderStats(images, min(images, 2000), side, side, side, side * side, grayscale)


#: The CPU recipe's network (``cpu_budget_recipe``), whose measured rates the tests describe.
CPU_RECIPE = Candidate("resnet18_quarter", 24, 1)


class FlopRate:
    """Images/s in proportion to 1/FLOPs, ``reference_rate`` for the CPU recipe's network;
    counts the measurements the planner asks for."""

    def __init__(self, reference_rate: float) -> None:
        self.reference_rate = reference_rate
        self.calls: list[Candidate] = []

    def __call__(self, candidate: Candidate, batch_size: int, stored_size: int) -> float:
        self.calls.append(candidate)
        return self.reference_rate * candidate_flops(CPU_RECIPE) / candidate_flops(candidate)


def plan(
    stats: FolderStats, seconds: float, hardware: Hardware = CPU, fixed=(), base=None, rate=800.0
):
    base = base or cpu_budget_recipe(data="images", out="run")
    return plan_recipe(stats, hardware, seconds, base, fixed, FlopRate(rate))


def test_cifar_sized_folder_on_two_cores_gets_the_cheapest_network_at_24_px() -> None:
    # 800 images/s of the CPU recipe's network (a bf16 machine) for 10 minutes: 8.4 passes,
    # far from the 102 its 2.2x the cheapest network's FLOPs need.
    result = plan(folder(50_000, 32), 600)
    config = result.config
    assert result.candidate == Candidate(*REFERENCE)
    assert config.backbone == BackboneConfig("resnet10_quarter", small_image_stem=True)
    assert (config.views.input_size, config.resolved_stored_size) == (24, 32)
    assert config.views.evaluation_size == 32
    assert (config.batch_size, config.loss.temperature, config.views.crop_scale) == (
        128,
        0.1,
        (0.2, 1.0),
    )
    # 540 s of training, less a first-run decode of 50,000 small files (~13 s), at the
    # cheapest network's rate.
    rate = 800 * candidate_flops(CPU_RECIPE) / candidate_flops(result.candidate)
    assert rate * 500 / 50_000 < result.passes < rate * 540 / 50_000
    assert "needs" not in result.as_dict()["backbone"]
    assert "cheapest network worth training" in result.as_dict()["backbone"]


@pytest.mark.parametrize(("side", "stored"), [(20, 24), (28, 28), (30, 30), (32, 32), (45, 45)])
def test_the_cache_keeps_every_pixel_of_images_smaller_than_the_views_want(
    side: int, stored: int
) -> None:
    # 24 px views want up to a 48 px cache; smaller images are stored at their own size
    # (never rounded down), and never below the views.
    result = plan(folder(28_709, side), 600)
    assert result.config.views.input_size == 24
    assert result.config.resolved_stored_size == stored


def test_the_projection_head_is_wide_even_for_a_narrow_backbone() -> None:
    # The quarter-width networks have 128-d features; the head still gets 2048 hidden units.
    assert plan(folder(50_000, 32), 600).config.method.projection_hidden_dim == 2048
    # A width the user sets is kept, and the plan says so.
    base = cpu_budget_recipe(data="images", out="run")
    base = base.with_overrides(method=replace(base.method, projection_hidden_dim=256))
    kept = plan(folder(50_000, 32), 600, base=base, fixed={"method.projection_hidden_dim"})
    assert kept.config.method.projection_hidden_dim == 256
    assert kept.as_dict()["method.projection_hidden_dim"].startswith("256: set by you")
    # A backbone wider than the minimum (2,560 features) keeps its own width.
    wide = plan(
        folder(50_000, 32),
        600,
        base=base.with_overrides(backbone=BackboneConfig("efficientnet_b7")),
        fixed={"backbone.name"},
    )
    assert wide.config.method.projection_hidden_dim == 2560


def test_more_time_buys_a_costlier_network_never_a_cheaper_one() -> None:
    stats = folder(50_000, 32)
    costs = [
        candidate_flops(plan(stats, minutes * 60).candidate) for minutes in (1, 10, 40, 160, 640)
    ]
    assert costs == sorted(costs)
    # 1, 10 and 40 minutes buy passes of the cheapest network: 32 px views (1.8x) would get
    # 42 passes in 40 minutes at this rate, and need 76; 60 minutes (63 passes) do not buy
    # them, 90 minutes (95 passes) do, and more time a costlier network still.
    assert costs[0] == costs[1] == costs[2] == candidate_flops(Candidate(*REFERENCE))
    assert plan(stats, 60 * 60).candidate == Candidate(*REFERENCE)
    assert plan(stats, 90 * 60).candidate == Candidate("resnet10_quarter", 32, 1)
    assert costs[4] > costs[3] > costs[2]


def test_images_with_detail_get_a_strided_stem_at_the_same_cost() -> None:
    result = plan(folder(21_600, 64), 600)
    assert result.candidate.stem_stride == 2
    assert result.config.backbone.stem_stride == 2
    assert result.config.views.input_size == 48
    assert result.config.resolved_stored_size == 64
    cost = candidate_flops(result.candidate) / candidate_flops(Candidate(*REFERENCE))
    assert cost == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize(
    ("side", "stored", "evaluated"), [(96, 96, 80), (128, 96, 80), (72, 72, 72)]
)
def test_images_larger_than_the_views_keep_their_pixels_in_cache_evaluation_and_crops(
    side: int, stored: int, evaluated: int
) -> None:
    # 48 px views through the stride-2 stem: the cache holds up to twice their side, whole
    # images are evaluated at up to 5/3 of it within the images' own pixels, and with a
    # cache twice the views 40 passes are enough for 8-100% crops.
    result = plan(folder(13_000, side), 600)
    config, shown = result.config, result.as_dict()
    assert (result.candidate.view_size, result.candidate.stem_stride) == (48, 2)
    assert (config.resolved_stored_size, config.views.evaluation_size) == (stored, evaluated)
    assert 40 <= result.passes < 100
    detailed = stored == 2 * 48
    assert config.views.crop_scale == ((0.08, 1.0) if detailed else (0.2, 1.0))
    assert ("cache twice the views' side" in shown["views.crop_scale"]) == detailed
    assert ("5/3 of the views" in shown["views.eval_input_size"]) == (evaluated > 64)


def test_small_crops_wait_for_many_passes_where_the_cache_holds_few_pixels() -> None:
    # CIFAR-sized images (32 px, 24 px views): 40 minutes give ~70 passes, under 100, and
    # the cache is only 4/3 of the views: crops stay at 20-100%, evaluation at 32 px.
    result = plan(folder(50_000, 32), 2400)
    assert 40 <= result.passes < 100
    assert result.config.views.crop_scale == (0.2, 1.0)
    assert result.config.views.evaluation_size == 32
    # A cache the user keeps small does the same on larger images.
    base = cpu_budget_recipe(data="images", out="run").with_overrides(stored_size=64)
    small = plan(folder(13_000, 96), 600, base=base, fixed={"stored_size"})
    assert small.config.resolved_stored_size == 64
    assert small.config.views.crop_scale == (0.2, 1.0)
    # 100 passes are enough whatever the cache.
    many = plan(folder(50_000, 32), 4 * 3600)
    assert many.passes >= 100 and many.config.views.crop_scale == (0.08, 1.0)


@pytest.mark.parametrize("side", [128, 400])
def test_a_small_folder_of_large_images_keeps_the_cheapest_views_at_65_passes(side: int) -> None:
    # 3,452 photos at 10 minutes, where 64 px views through the stride-2 stem (1.8x the
    # reference's FLOPs) get ~65 passes of 5,000, as flowers (128 px) and clothing photos
    # (400 px) did on 2 fp32 cores: there they lost 4.3 and 4-8.6 points to 48 px views
    # (benchmarks/README.md, forty-sixth session), so 65 passes must not buy them.
    result = plan(folder(3_452, side), 600, rate=500.0)
    rate_64 = (
        500.0 * candidate_flops(CPU_RECIPE) / candidate_flops(Candidate("resnet10_quarter", 64, 2))
    )
    assert 60 < rate_64 * 535 / 5_000 < 70
    assert result.candidate == Candidate("resnet10_quarter", 48, 2)
    assert "cheapest network worth training" in result.as_dict()["backbone"]


def test_a_wider_backbone_the_user_sets_gets_the_strided_stem_its_images_afford() -> None:
    # 128 px images, 5 minutes: the quarter-width ResNet-18 gets far fewer passes than its
    # cost over the cheapest network would need, yet its 48 px views through the stride-2
    # stem cost what its own 24 px views do, so they are no dearer a choice.
    base = cpu_budget_recipe(data="images", out="run").with_overrides(
        backbone=BackboneConfig("resnet18_quarter")
    )
    result = plan(folder(3_452, 128), 300, fixed={"backbone.name"}, base=base)
    assert result.candidate == Candidate("resnet18_quarter", 48, 2)
    shown = result.as_dict()
    assert shown["backbone"].startswith("resnet18_quarter: set by you; ")
    assert "2.2x the cheapest network's work per image" in shown["backbone"]
    # The same network on 32 px images has no detail for the strided stem.
    small = plan(folder(3_452, 32), 300, fixed={"backbone.name"}, base=base)
    assert small.candidate == Candidate("resnet18_quarter", 24, 1)


def test_values_the_user_sets_are_marked_and_the_plans_own_value_named_beside_them() -> None:
    base = cpu_budget_recipe(data="images", out="run")
    base = base.with_overrides(
        optim=replace(base.optim, base_learning_rate=0.5),
        loss=replace(base.loss, temperature=0.2),
        views=replace(base.views, crop_scale=[0.08, 1.0]),  # a list, as YAML gives it
    )
    fixed = {"optim.base_learning_rate", "loss.temperature", "views.crop_scale"}
    shown = plan(folder(50_000, 32), 600, base=base, fixed=fixed).as_dict()
    assert shown["lr"].startswith("0.5: set by you; per 256 images")
    assert shown["temperature"].startswith("0.2: set by you; the plan's 0.1: NT-Xent")
    assert shown["views.crop_scale"] == (
        "0.08-1: set by you; the plan's 0.2-1: few passes: tiny crops are mostly noise"
    )
    # The plan's own values, set by the user, are marked but need no second value.
    same = base.with_overrides(
        optim=replace(base.optim, base_learning_rate=0.3),
        loss=replace(base.loss, temperature=0.1),
        views=replace(base.views, crop_scale=(0.2, 1.0)),
    )
    shown = plan(folder(50_000, 32), 600, base=same, fixed=fixed).as_dict()
    assert shown["temperature"].startswith("0.1: set by you; NT-Xent")
    assert shown["views.crop_scale"] == "0.2-1: set by you; few passes: tiny crops are mostly noise"
    # Decisions shown under short names are marked too.
    network = base.with_overrides(
        backbone=BackboneConfig("resnet18_quarter", small_image_stem=True, stem_stride=2)
    )
    shown = plan(
        folder(50_000, 96), 600, base=network, fixed={"backbone.name", "backbone.stem_stride"}
    ).as_dict()
    assert shown["backbone"].startswith("resnet18_quarter: set by you; ")
    assert shown["stem"].startswith("stride 2: set by you; ")
    # Nothing set: nothing marked.
    planned = plan(folder(50_000, 32), 600).as_dict()
    assert not any("set by you" in line or "the plan's" in line for line in planned.values())


def test_a_view_size_the_user_sets_is_kept_and_the_stem_planned_around_it() -> None:
    base = cpu_budget_recipe(data="images", out="run")
    base = base.with_overrides(views=base.views.__class__(input_size=64))
    result = plan(folder(5_000, 256), 600, fixed={"views.input_size"}, base=base)
    assert result.config.views.input_size == 64
    assert result.candidate.stem_stride == 2  # 32 px of work instead of 64
    shown = result.as_dict()
    assert shown["views.input_size"].startswith("64: set by you; ")


def test_small_folders_get_smaller_batches_and_grayscale_ones_no_hue() -> None:
    result = plan(folder(300, 96, grayscale=1.0), 120)
    assert result.config.batch_size == 32  # at least 8 steps per epoch
    assert (result.config.views.saturation, result.config.views.hue) == (0.0, 0.0)
    tiny = plan(folder(40, 96), 120)
    assert tiny.config.batch_size == 16
    assert "fewer than 8 steps per epoch" in tiny.as_dict()["batch_size"]


def test_the_backbone_reason_says_what_a_pass_counts() -> None:
    def reason(images: int) -> str:
        return plan(folder(images, 32), 600).as_dict()["backbone"]

    assert "passes over 50,000 images" in reason(50_000)
    # A tiny folder is not planned as if 51 images were a pass: the text says so.
    assert "passes of 5,000 images (the 51 images repeated" in reason(51)
    assert "passes of 50,000 images (a pass counts at most 50,000 of the 100,000)" in reason(
        100_000
    )


def test_a_budget_of_few_steps_gets_smaller_batches() -> None:
    # 1 minute (49 s of training after decoding a sample of 20,000 images) on a slow fp32
    # machine: 99 steps of 128 images; halved until at least MIN_STEPS steps or the smallest
    # planned batch.
    slow = plan(folder(50_000, 32), 60, rate=120.0)
    assert slow.config.batch_size == MIN_PLANNED_BATCH
    assert slow.config.max_images == 20_000
    assert slow.as_dict()["batch_size"].startswith("32: the budget gives ~99 steps of 128")
    assert "scaled to 0.0375" in slow.as_dict()["lr"]
    # Three times faster: the run shows ~38,000 of the 50,000 images (a sample of 39,000,
    # rounded to two digits near the folder's size), 299 steps of 128, so 597 of 64 suffice.
    halved_once = plan(folder(50_000, 32), 60, rate=400.0)
    assert halved_once.config.max_images == 39_000
    assert halved_once.config.batch_size == 64
    steps = halved_once.passes * 50_000 / 64
    assert MIN_STEPS <= steps < 2 * MIN_STEPS
    # Enough steps: the CPU batch stays; a batch the user set is kept whatever the steps.
    assert plan(folder(50_000, 32), 600, rate=800.0).config.batch_size == 128
    base = cpu_budget_recipe(data="images", out="run").with_overrides(batch_size=256)
    kept = plan(folder(50_000, 32), 60, rate=120.0, fixed={"batch_size"}, base=base)
    assert kept.config.batch_size == 256
    # Said once, with what the user's batch buys.
    shown = kept.as_dict()["batch_size"]
    assert shown.startswith("256: set by you; the budget gives ~")
    assert shown.count("set by you") == 1


class GpuRate:
    """A GPU's images/s: bound by kernel launches for small networks (60,000 images/s) and
    by 300 TFLOP/s of training work (3x the forward FLOPs, two views) for large ones."""

    def __call__(self, candidate: Candidate, batch_size: int, stored_size: int) -> float:
        return min(60_000.0, 3e14 / (6 * candidate_flops(candidate)))


def test_gpu_plan_for_a_described_device() -> None:
    base = cpu_budget_recipe(data="images", out="run")
    result = plan_recipe(folder(50_000, 32), H200, 900, base, (), GpuRate())
    assert result.config.batch_size == 512
    reference = candidate_flops(Candidate(*REFERENCE))
    assert candidate_flops(result.candidate) > 10 * reference  # a full-width network
    assert "H200" in H200.describe()


class LaunchBoundRate:
    """A GPU bound by kernel launches: time per image grows as FLOPs ** 0.1 (on one H200 the
    planner's probe measured a full-width ResNet-18 at 24 px, 34x the reference's FLOPs, at
    1.2x the time per image)."""

    def __call__(self, candidate: Candidate, batch_size: int, stored_size: int) -> float:
        reference = candidate_flops(Candidate(*REFERENCE))
        return 40_000.0 * (reference / candidate_flops(candidate)) ** 0.1


def test_rate_model_fits_a_power_of_flops_through_two_measurements() -> None:
    # 100 images/s at 1 GFLOP and 25 at 16: time grows as FLOPs ** 0.5, so 50 at 4.
    candidate = Candidate(*REFERENCE)
    flops = candidate_flops(candidate)
    rate = _rate_model((flops, 100.0), (16 * flops, 25.0))
    assert rate(candidate) == pytest.approx(100.0)
    assert rate(Candidate("resnet18_quarter", 32, 1)) == pytest.approx(
        100.0 * (flops / candidate_flops(Candidate("resnet18_quarter", 32, 1))) ** 0.5
    )
    # One point (the anchor is the cheapest candidate, as on CPUs): in proportion to FLOPs.
    alone = _rate_model((flops, 100.0), (flops, 100.0))
    assert alone(Candidate("resnet18_quarter", 32, 1)) == pytest.approx(
        100.0 * flops / candidate_flops(Candidate("resnet18_quarter", 32, 1))
    )
    # Slower at fewer FLOPs (noise) counts as launch-bound, never as negative cost.
    flat = _rate_model((flops, 100.0), (16 * flops, 120.0))
    assert flat(Candidate("resnet18", 32, 1)) == pytest.approx(100.0)


def test_needed_passes_count_flops_unless_time_grows_slower() -> None:
    # 4x the FLOPs at 4x the time: two doublings, as on the CPUs the thresholds came from.
    assert _needed_passes(4.0, 4.0) == pytest.approx(2 * PASSES_PER_DOUBLING)
    # 64x the FLOPs at 2x the time (launch-bound): priced as 2 ** 1.6 FLOPs, not 64.
    assert _needed_passes(64.0, 2.0) == pytest.approx(PASSES_PER_DOUBLING * FLOPS_PER_TIME_EXPONENT)
    # Same time as the cheapest: capacity is free.
    assert _needed_passes(64.0, 0.9) == 0.0
    assert _needed_passes(1.0, 1.0) == 0.0


def test_a_launch_bound_gpu_buys_a_full_width_network_in_three_minutes() -> None:
    base = cpu_budget_recipe(data="images", out="run")
    result = plan_recipe(folder(50_000, 32), H200, 165, base, (), LaunchBoundRate())
    cost = candidate_flops(result.candidate) / candidate_flops(Candidate(*REFERENCE))
    assert cost > 30  # a full-width network
    assert "x its time per image needs >=" in result.decisions[0].reason
    # Priced by FLOPs alone it would need ~300 passes and have been kept out.
    assert result.passes < PASSES_PER_DOUBLING * math.log2(cost)


class SpentProbe:
    """Measures the first ``measurements`` candidates with ``rate``, then, its time spent,
    answers None (not measured), as :func:`measured_rate` does."""

    def __init__(self, rate, measurements: int) -> None:
        self.rate, self.left = rate, measurements

    def __call__(self, candidate: Candidate, batch_size: int, stored_size: int) -> float | None:
        self.left -= 1
        return self.rate(candidate, batch_size, stored_size) if self.left >= 0 else None


def test_candidates_the_probe_had_no_time_for_are_priced_by_the_fitted_rate_model() -> None:
    # The two measurements (anchor, cheapest) fit the launch-bound power law exactly, so
    # the plan without further measurements is the fully measured one; pricing the rest in
    # proportion to FLOPs (the probe's old fallback) would have kept the full-width
    # network out (~300 passes needed).
    base = cpu_budget_recipe(data="images", out="run")
    measured = plan_recipe(folder(50_000, 32), H200, 165, base, (), LaunchBoundRate())
    spent = plan_recipe(folder(50_000, 32), H200, 165, base, (), SpentProbe(LaunchBoundRate(), 2))
    assert spent.candidate == measured.candidate
    assert spent.passes == pytest.approx(measured.passes)
    # With one measurement only, the rest are priced in proportion to FLOPs: cheaper plan.
    alone = plan_recipe(folder(50_000, 32), H200, 165, base, (), SpentProbe(LaunchBoundRate(), 1))
    assert candidate_flops(alone.candidate) < candidate_flops(measured.candidate)
    # The first candidate must be measured.
    with pytest.raises(ValueError, match="first candidate"):
        plan_recipe(folder(50_000, 32), H200, 165, base, (), SpentProbe(LaunchBoundRate(), 0))


def test_views_are_never_larger_than_the_images() -> None:
    base = cpu_budget_recipe(data="images", out="run")
    for side in (28, 32, 40):
        for seconds in (180, 900, 3600):
            result = plan_recipe(folder(50_000, side), H200, seconds, base, (), LaunchBoundRate())
            assert result.candidate.view_size <= max(side, 24)
    # Images smaller than the smallest working size still get a network (at 24 px).
    assert plan(folder(5_000, 20), 600).candidate.view_size == 24


def test_measures_few_candidates() -> None:
    rate = FlopRate(800.0)
    plan_recipe(folder(50_000, 32), CPU, 2400, cpu_budget_recipe(), (), rate)
    assert 1 <= len(rate.calls) <= 3
    assert len(set(rate.calls)) == len(rate.calls)


def test_the_cache_is_kept_within_memory() -> None:
    small_machine = Hardware("cpu", 2, True, memory_bytes=4 * 2**30)
    result = plan(folder(1_000_000, 500), 600, hardware=small_machine)
    stored = result.config.resolved_stored_size
    assert 1_000_000 * stored**2 * 3 <= 0.5 * 4 * 2**30


def test_the_plan_is_saved_in_the_configuration() -> None:
    result = plan(folder(50_000, 32), 600)
    config = result.config.with_overrides(plan=result.as_dict())
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert set(config.plan) >= {"backbone", "views.input_size", "stored_size", "batch_size"}
    assert all(": " in reason for reason in config.plan.values())


def test_a_fixed_backbone_without_a_resnet_stem_plans_the_view_size() -> None:
    base = cpu_budget_recipe(data="images", out="run").with_overrides(
        backbone=TrainConfig().backbone.__class__("mobilenet_v3_small")
    )
    result = plan(folder(10_000, 256), 600, fixed={"backbone.name"}, base=base)
    assert result.config.backbone.name == "mobilenet_v3_small"
    assert not result.config.backbone.small_image_stem
    assert result.candidate.stem_stride == 0


def test_contradictory_fixed_settings_are_refused() -> None:
    base = cpu_budget_recipe(data="images", out="run")
    base = base.with_overrides(
        views=base.views.__class__(input_size=14),
        backbone=base.backbone.__class__("resnet18", True, 2),
    )
    # 14 px views at stride 2 leave a 7 px feature map: too small for a ResNet's stages.
    with pytest.raises(ContrastiveError, match="no network.*working size of 7 px"):
        plan(folder(1000, 64), 60, fixed={"views.input_size", "backbone.stem_stride"}, base=base)


def test_the_plan_says_what_a_view_size_the_user_set_costs() -> None:
    base = cpu_budget_recipe(data="images", out="run")
    base = base.with_overrides(views=base.views.__class__(input_size=64))
    result = plan(folder(50_000, 32), 600, fixed={"views.input_size"}, base=base)
    shown = result.as_dict()
    assert "the cheapest network's work per image, which would get" in shown["backbone"]
    assert shown["stem"].startswith("stride 2: 64 px views; stride 2 costs what 32 px")


def _on_the_grid(images: int) -> bool:
    digits = str(images)
    return int(digits[0]) in SAMPLE_STEPS and set(digits[1:]) <= {"0"}


def test_a_budget_that_shows_part_of_a_large_folder_decodes_a_sample() -> None:
    # 100,000 images of 64 px, 1 minute on a slow fp32 machine: the run shows ~20,000.
    stats = folder(100_000, 64)
    sampled = plan(stats, 60, rate=120.0)
    sample = sampled.config.max_images
    assert sample is not None and _on_the_grid(sample)
    shown = sampled.passes * min(stats.num_images, 50_000)
    assert shown <= sample < stats.num_images
    assert sample <= 2 * shown  # not much more than the run shows
    reason = sampled.as_dict()["max_images"]
    assert f"a seeded sample of {sample:,} is decoded" in reason
    assert "the first run decodes the sample" in sampled.as_dict()["stored_size"]
    # Decoding all of them leaves less time to train: a user who asks for every image.
    base = cpu_budget_recipe(data="images", out="run").with_overrides(max_images=100_000)
    everything = plan(stats, 60, rate=120.0, base=base, fixed={"max_images"})
    assert everything.config.max_images == 100_000
    assert "max_images" not in everything.as_dict()
    assert everything.passes < 0.9 * sampled.passes
    # A smaller sample the user sets is kept and priced.
    base = base.with_overrides(max_images=10_000)
    kept = plan(stats, 60, rate=120.0, base=base, fixed={"max_images"})
    assert kept.config.max_images == 10_000
    assert kept.as_dict()["max_images"].startswith("10000: set by you")


def test_every_image_is_decoded_when_the_budget_shows_them_all_or_they_are_cached() -> None:
    stats = folder(100_000, 64)
    assert plan(stats, 600, rate=800.0).config.max_images is None
    assert plan(folder(50_000, 32), 600).config.max_images is None
    base = cpu_budget_recipe(data="images", out="run")
    sizes: list[int] = []

    def decoded(stored_size: int) -> bool:
        sizes.append(stored_size)
        return True

    cached = plan_recipe(stats, CPU, 60, base, (), FlopRate(120.0), decoded)
    assert cached.config.max_images is None
    assert sizes == [cached.config.resolved_stored_size]
    assert "decoded by an earlier run: reused" in cached.as_dict()["stored_size"]
    assert cached.passes > plan(stats, 60, rate=120.0).passes
    # A sample the user set is decoded on its own, whatever the cache holds for the folder.
    sampled = base.with_overrides(max_images=10_000)
    own = plan_recipe(stats, CPU, 60, sampled, {"max_images"}, FlopRate(120.0), decoded)
    assert "the first run decodes the sample" in own.as_dict()["stored_size"]


def test_decoding_measured_on_the_folder_prices_the_sample() -> None:
    # 100,000 large photos, 10 minutes: by the pixel rule (about 2 ms per photo) every image
    # fits the budget; timed at 20 ms per photo, decoding them all would take 1,000 s, so a
    # sample is decoded and the run still gets most of its training time.
    photos = folder(100_000, 3000)
    assert plan(photos, 600).config.max_images is None
    slow = plan(replace(photos, decode_seconds=0.02), 600)
    assert slow.config.max_images is not None and slow.config.max_images < 90_000
    assert "a seeded sample of" in slow.as_dict()["max_images"]


def test_measure_samples_shrink_where_decoding_them_would_eat_the_budget() -> None:
    photos = replace(folder(5_000, 3000), decode_seconds=0.02)  # 20 ms per photo, one core
    short = plan(photos, 60)
    # 3% of a minute is 1.8 s: 90 photos, so the floor of 256 (5 s).
    assert (short.config.health_sample_size, short.config.projector_sample_size) == (256, 256)
    assert (
        "2,048 images for the health measures' sample would take ~41 s on one core"
        in (short.as_dict()["health_sample_size"])
    )
    assert "1,000 images for the projector's" in short.as_dict()["projector_sample_size"]
    # A folder smaller than the sample is priced at its size.
    few = plan(replace(folder(500, 3000), decode_seconds=0.02), 60)
    assert "decoding 500 images" in few.as_dict()["health_sample_size"]
    assert plan(photos, 3600).config.health_sample_size == 2048  # 108 s is 3% of an hour
    # Small images keep the defaults; a size the user set is kept.
    assert plan(folder(1_000, 32), 60).config.health_sample_size == 2048
    base = cpu_budget_recipe(data="images", out="run").with_overrides(health_sample_size=4096)
    kept = plan(photos, 60, base=base, fixed={"health_sample_size"})
    assert kept.config.health_sample_size == 4096


def test_a_backbone_that_is_not_a_resnet_keeps_its_own_stem_and_the_plan_says_so() -> None:
    # --backbone convnext_tiny on the cpu-budget base: no small-image stem (ResNets only).
    base = cpu_budget_recipe(data="images", out="run").with_overrides(
        backbone=BackboneConfig("convnext_tiny")
    )
    result = plan(folder(300, 32), 600, fixed={"backbone.name"}, base=base)
    assert result.config.backbone == BackboneConfig("convnext_tiny")
    shown = result.as_dict()
    assert shown["stem"].startswith("its own: convnext_tiny is not a torchvision ResNet")
    assert shown["views.input_size"].startswith("32: the largest view this budget affords")


@pytest.mark.parametrize(
    ("fixed_stem", "candidate"),
    [
        (BackboneConfig("resnet50"), Candidate("resnet50", 96, 4)),
        (BackboneConfig("resnet50", True, 2), Candidate("resnet50", 48, 2)),
    ],
)
def test_a_stem_the_user_fixes_gets_views_of_its_smallest_working_size(
    fixed_stem: BackboneConfig, candidate: Candidate
) -> None:
    # 32 px images: the fixed stem's only way to a working size of 24 px is upsampling, as
    # the stride-1 stem does for images under 24 px.
    base = cpu_budget_recipe(data="images", out="run").with_overrides(backbone=fixed_stem)
    fixed = {"backbone.name", "backbone.small_image_stem", "backbone.stem_stride"}
    result = plan(folder(300, 32), 600, fixed=fixed, base=base)
    assert result.candidate == candidate
    assert "the images' 32 px are upsampled" in result.as_dict()["views.input_size"]
    # Where the planner chooses the stem, a strided one still waits for images that hold it.
    assert plan(folder(300, 32), 600).candidate.stem_stride == 1


@pytest.mark.parametrize(
    ("backbone", "size", "message"),
    [
        (
            BackboneConfig("resnet50"),
            24,
            "--input-size 24 leaves a working size of 6 px after the ImageNet stem (stride 4 "
            "with its max-pool), below the 8 px a ResNet needs; give --input-size 32 or more",
        ),
        (BackboneConfig("resnet50", True, 2), 31, "--input-size 31 is not a multiple of"),
        (BackboneConfig("vit_b_16"), 64, "--backbone vit_b_16 does not take --input-size 64"),
    ],
)
def test_the_no_network_error_says_why(backbone: BackboneConfig, size: int, message: str) -> None:
    base = cpu_budget_recipe(data="images", out="run")
    base = base.with_overrides(backbone=backbone, views=replace(base.views, input_size=size))
    fixed = {"views.input_size", "backbone.name", "backbone.small_image_stem"}
    if backbone.small_image_stem:
        fixed.add("backbone.stem_stride")
    with pytest.raises(ContrastiveError, match="no network to plan: ") as error:
        plan(folder(300, 32), 600, fixed=fixed, base=base)
    assert message in str(error.value)


def test_backbones_are_described_in_words() -> None:
    assert describe_backbone(BackboneConfig("resnet50")) == "resnet50, ImageNet stem"
    assert (
        describe_backbone(BackboneConfig("resnet18_quarter", True, 2))
        == "resnet18_quarter, small-image stem with stride 2"
    )
    assert describe_backbone(BackboneConfig("convnext_tiny")) == "convnext_tiny, its own stem"


def test_another_method_is_planned_at_its_own_temperature() -> None:
    from contrastive.methods.config import MethodConfig

    base = cpu_budget_recipe(data="images", out="run")
    simclr = plan(folder(50_000, 32), 600, base=base).as_dict()
    assert simclr["temperature"].startswith("0.1: NT-Xent")
    # 0.1 was measured on SimCLR; MoCo with the distance loss collapsed at it.
    moco = base.with_overrides(method=MethodConfig("moco"))
    shown = plan(folder(50_000, 32), 600, base=moco).as_dict()
    assert shown["temperature"].startswith("0.2: moco's usual value")


def test_a_method_given_to_a_recipe_drops_the_recipe_s_temperature(caplog) -> None:  # noqa: ANN001
    import logging

    from contrastive.recipes import settings_for_recipe

    recipe = cpu_budget_recipe(data="images", out="run")
    with caplog.at_level(logging.INFO):
        values = settings_for_recipe({"method.name": "moco"}, recipe)
    assert values["loss.temperature"] is None  # the method's own (MoCo's 0.2)
    assert "the temperature 0.1 belongs to the recipe's simclr" in caplog.text
    given = {"method.name": "moco", "loss.temperature": 0.1}
    assert settings_for_recipe(given, recipe)["loss.temperature"] == 0.1
    assert "loss.temperature" not in settings_for_recipe({"method.name": "simclr"}, recipe)


def test_the_readme_states_the_rules_with_the_planners_own_numbers() -> None:
    # The README said "60 x log2(k) passes" for sessions after the threshold became 90: a
    # user reading it to predict a plan was told a rule the planner no longer applied.
    readme = Path(__file__).resolve().parents[2] / "README.md"
    text = " ".join(readme.read_text(encoding="utf-8").split())
    # A new ratio fails here until the README says it.
    ratio = "twice" if STORED_VIEW_RATIO == 2 else f"{STORED_VIEW_RATIO:g}"
    stated = [
        f"gives it {PASSES_PER_DOUBLING:g} x log2(k) passes over the data",
        f"the cache keeps up to {ratio} the view size",
        f"evaluated at {Fraction(EVAL_VIEW_RATIO).limit_denominator(8)} of the view size",
        f"(up to {Fraction(DETAILED_EVAL_VIEW_RATIO).limit_denominator(8)} where",
        f"replace 20-100% after {MANY_PASSES} passes ({DETAILED_CROP_PASSES} where",
        f"fewer than {MIN_STEPS} steps gets a smaller batch (down to {MIN_PLANNED_BATCH}:",
    ]
    missing = [phrase for phrase in stated if phrase not in text]
    assert not missing, f"README.md states other rules than the planner applies: {missing}"
