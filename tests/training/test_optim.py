"""build_optimizer (parameter groups, weight decay) and build_scheduler (warm-up + cosine)."""

from __future__ import annotations

import math

import pytest
import torch
from lightly.utils.lars import LARS
from torch import nn

from contrastive.losses import LossConfig
from contrastive.methods import MethodConfig, build_method
from contrastive.training.config import OptimConfig
from contrastive.training.optim import build_optimizer, build_scheduler, continue_schedule


def small_network() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
        nn.LayerNorm(5),
        nn.Linear(5, 2, bias=False),
    )


def moco() -> nn.Module:
    return build_method(
        MethodConfig("moco", projection_output_dim=4, queue_size=8),
        LossConfig(),
        small_network(),
        feature_dim=2,
    )


def learning_rates(config: OptimConfig, total_steps: int) -> list[float]:
    optimizer = build_optimizer([nn.Linear(2, 2)], config, batch_size=256)
    scheduler = build_scheduler(optimizer, config, total_steps)
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        assert all(group["lr"] == rates[-1] for group in optimizer.param_groups)
        optimizer.step()
        scheduler.step()
    return rates


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_near_zero() -> None:
    # 100 steps, 10% warm-up: lr_k = 0.12 (k + 1) / 10 for k < 10, then cosine from 0.12.
    rates = learning_rates(OptimConfig(warmup_fraction=0.1), total_steps=100)
    peak = 0.12
    assert rates[0] == pytest.approx(peak / 10)  # ~0: one tenth of the way up
    for step in range(10):
        assert rates[step] == pytest.approx(peak * (step + 1) / 10)
    assert max(rates) == pytest.approx(peak)
    assert rates[9] == pytest.approx(peak)  # the peak is reached at the end of warm-up
    assert rates[10] == pytest.approx(peak)
    decay = rates[10:]
    assert all(later <= earlier for earlier, later in zip(decay, decay[1:]))
    # Half-way through the cosine part the rate is about half the peak.
    assert rates[10 + 45] == pytest.approx(peak / 2, rel=0.05)
    assert rates[-1] < 0.01 * peak


def test_schedule_without_warmup_starts_at_the_peak() -> None:
    rates = learning_rates(OptimConfig(warmup_fraction=0.0), total_steps=20)
    assert rates[0] == pytest.approx(0.12)
    assert rates[-1] < 0.01 * 0.12


def test_schedule_follows_the_cosine_formula() -> None:
    # After warm-up: lr = end + (peak - end) (1 + cos(pi t / (T - 1))) / 2, end = 0.001 peak,
    # T = 40 cosine steps.
    rates = learning_rates(OptimConfig(warmup_fraction=0.2), total_steps=50)
    for t in range(40):
        scale = 0.001 + (1 - 0.001) * (1 + math.cos(math.pi * t / 39)) / 2
        assert rates[10 + t] == pytest.approx(0.12 * scale, rel=1e-6, abs=1e-9)


def stepped(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The learning rates of the next ``steps`` optimiser steps."""
    rates = []
    for _ in range(steps):
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def test_a_finished_schedule_continued_ramps_up_to_the_longer_cosine_without_a_jump() -> None:
    # A 20-step run (10% warm-up) ends at the end rate; resumed to 60 steps, before the fix
    # the 40 added steps stayed at that rate (and Lightly warned at every step).
    config = OptimConfig(warmup_fraction=0.1)
    scheduler = build_scheduler(build_optimizer([nn.Linear(2, 2)], config, 256), config, 20)
    end = stepped(scheduler, 20)[-1]
    continue_schedule(scheduler, 60)
    assert (scheduler.warmup_epochs, scheduler.max_epochs) == (6, 60)
    # Ramp: 6 steps (the longer run's warm-up) up from the rate reached, no jump.
    assert (scheduler.ramp_start, scheduler.ramp_steps) == (20, 6)
    added = stepped(scheduler, 40)
    assert added[0] == pytest.approx(scheduler.base_lrs[0] * 0.001) and end < 0.01 * 0.12
    ramp = added[:7]
    assert all(later > earlier for earlier, later in zip(ramp, ramp[1:]))
    assert max(b - a for a, b in zip(added, added[1:])) < 0.12 / 5  # no jump to the peak
    # Then the cosine a 60-step run follows from step 26 on, down to the end rate.
    built = build_scheduler(build_optimizer([nn.Linear(2, 2)], config, 256), config, 60)
    assert added[6:] == pytest.approx(stepped(built, 60)[26:], rel=1e-9)
    assert added[-1] < 0.01 * 0.12


def test_a_continued_schedule_survives_a_checkpoint_mid_ramp() -> None:
    config = OptimConfig(warmup_fraction=0.1)
    scheduler = build_scheduler(build_optimizer([nn.Linear(2, 2)], config, 256), config, 20)
    stepped(scheduler, 20)
    continue_schedule(scheduler, 60)
    stepped(scheduler, 3)  # mid-ramp
    restored = build_scheduler(build_optimizer([nn.Linear(2, 2)], config, 256), config, 20)
    restored.load_state_dict(scheduler.state_dict())
    restored.optimizer.load_state_dict(scheduler.optimizer.state_dict())
    assert stepped(restored, 37) == stepped(scheduler, 37)


def test_groups_split_weights_from_biases_and_norm_parameters() -> None:
    model = moco()
    optimizer = build_optimizer([model], OptimConfig(), batch_size=128)
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert set(groups) == {"weight_decay", "no_weight_decay"}
    assert groups["weight_decay"]["weight_decay"] == 5e-4
    assert groups["no_weight_decay"]["weight_decay"] == 0.0
    assert all(group["lr"] == pytest.approx(0.06) for group in optimizer.param_groups)

    owner = {
        id(p): (f"{module_name}.{name}".lstrip("."), type(module), name)
        for module_name, module in model.named_modules()
        for name, p in module.named_parameters(recurse=False)
    }
    decayed = [owner[id(p)] for p in groups["weight_decay"]["params"]]
    not_decayed = [owner[id(p)] for p in groups["no_weight_decay"]["params"]]
    # Conv and linear weights are decayed; biases, batch-norm and layer-norm are not.
    assert all(kind in (nn.Conv2d, nn.Linear) and name == "weight" for _, kind, name in decayed)
    assert all(
        name == "bias" or kind in (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)
        for _, kind, name in not_decayed
    )
    decayed = [full for full, _, _ in decayed]
    not_decayed = [full for full, _, _ in not_decayed]
    assert {"backbone.1.weight", "backbone.5.weight", "backbone.0.bias"} <= set(not_decayed)
    assert "backbone.0.weight" in decayed

    # Every trainable parameter exactly once; the momentum encoder not at all.
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert sorted(decayed + not_decayed) == trainable
    assert not any(n.startswith("momentum_") for n in decayed + not_decayed)
    assert any(n.startswith("momentum_") for n, _ in model.named_parameters())


def test_weight_decay_acts_only_on_the_decayed_group() -> None:
    # With zero gradients one SGD step is p <- p - lr * wd * p = p (1 - 0.12 * 0.5) for
    # decayed parameters and leaves the others unchanged.
    model = small_network()
    config = OptimConfig(weight_decay=0.5, momentum=0.0)
    optimizer = build_optimizer([model], config, batch_size=256)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    decayed = {id(p) for p in optimizer.param_groups[0]["params"]}
    for name, parameter in model.named_parameters():
        factor = 1 - 0.12 * 0.5 if id(parameter) in decayed else 1.0
        torch.testing.assert_close(parameter.detach(), before[name] * factor)


@pytest.mark.parametrize(("optimizer", "expected_type"), [("sgd", torch.optim.SGD), ("lars", LARS)])
def test_optimizer_type_and_settings(optimizer: str, expected_type: type) -> None:
    config = OptimConfig(optimizer=optimizer, momentum=0.8, weight_decay=1e-5)
    built = build_optimizer([small_network()], config, batch_size=512)
    assert type(built) is expected_type
    assert built.param_groups[0]["lr"] == pytest.approx(0.24)
    assert built.param_groups[0]["momentum"] == 0.8
    assert built.param_groups[0]["weight_decay"] == 1e-5
    assert built.param_groups[1]["weight_decay"] == 0.0
