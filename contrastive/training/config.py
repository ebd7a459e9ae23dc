"""The training configuration: one dataclass per component, nested in :class:`TrainConfig`.

The resolved configuration is saved as ``config.yaml`` in every run directory and can be
loaded back with :meth:`TrainConfig.from_dict` (``contrastive train --config FILE``).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from contrastive.backbone_config import BackboneConfig
from contrastive.errors import ContrastiveError
from contrastive.losses import LossConfig
from contrastive.methods.config import MethodConfig
from contrastive.training.health_rules import MEASURES
from contrastive.views.config import ViewConfig

OPTIMIZERS = ("sgd", "lars")
VIEW_PIPELINES = ("batched", "per_image")
#: Metric loggers (Lightning's); ``auto`` is csv plus tensorboard when it is installed.
LOGGERS = ("auto", "csv", "tensorboard", "mlflow", "wandb")
#: Lightning's accelerator names and precision settings, checked before any work is done
#: (Lightning itself names a bad one only once the data is scanned and decoded).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = (
    "auto",
    "32-true",
    "bf16-mixed",
    "16-mixed",
    "bf16-true",
    "16-true",
    "64-true",
    "32",
    "16",
    "bf16",
    "64",
)
#: ``devices``: a count (-1: every device), ``auto``, or a comma-separated list of indices.
_DEVICES_PATTERN = re.compile(r"auto|-1|[1-9]\d*|\d+(\s*,\s*\d+)+\s*,?|\d+\s*,")


def _valid_devices(devices: Any) -> bool:
    """Whether Lightning can read ``devices``: a count, ``auto``, or device indices (a
    comma-separated string or, from a YAML file, a list)."""
    if isinstance(devices, list):
        return bool(devices) and all(
            isinstance(index, int) and not isinstance(index, bool) and index >= 0
            for index in devices
        )
    return not isinstance(devices, bool) and bool(_DEVICES_PATTERN.fullmatch(str(devices).strip()))


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule.

    The learning rate is ``base_learning_rate * batch_size / 256`` (linear scaling, Goyal et
    al. 2017); the default 0.12 equals Lightly's CIFAR-10 setting ``0.06 * batch / 128``.
    It warms up linearly for ``warmup_fraction`` of the steps, then follows a cosine decay.

    Attributes:
        optimizer: ``sgd`` or ``lars`` (Lightly's LARS, for large batches).
        base_learning_rate: Learning rate for a batch of 256.
        momentum: SGD momentum.
        weight_decay: L2 penalty on weights (not on biases and batch-norm parameters).
        warmup_fraction: Fraction of all steps spent warming up.
    """

    optimizer: str = "sgd"
    base_learning_rate: float = 0.12
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ContrastiveError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if not self.base_learning_rate > 0:
            raise ContrastiveError(f"learning rate must be > 0, got {self.base_learning_rate}")
        if self.weight_decay < 0 or not 0 <= self.warmup_fraction < 1:
            raise ContrastiveError("need weight_decay >= 0 and 0 <= warmup_fraction < 1")

    def learning_rate(self, batch_size: int) -> float:
        """The scaled peak learning rate for a (global) batch size."""
        return self.base_learning_rate * batch_size / 256


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved next to the run as ``config.yaml``.

    Attributes:
        data: Folder of training images (read recursively; labels are not used).
        out: Run directory (config, metrics, checkpoints, exported backbone).
        views: Augmentation distributions.
        backbone: Which network.
        method: SimCLR or MoCo and their parameters.
        loss: NT-Xent or the distance loss.
        optim: Optimiser and schedule.
        batch_size: Images per step (per process).
        epochs: Passes over the data.
        seed: Seed for weights, shuffling and augmentations.
        deterministic: Use deterministic algorithms (Lightning ``deterministic="warn"``), so
            a run repeated, or interrupted and resumed, with the same seed on the same
            hardware gives the same weights; ops without a deterministic version warn.
        num_workers: DataLoader worker processes.
        accelerator: Lightning accelerator: ``auto``, ``cpu``, ``gpu``.
        devices: Lightning devices (``1``, ``2``, ``auto``...).
        num_nodes: Machines, for multi-node DDP.
        precision: Lightning precision (``32-true``, ``bf16-mixed``, ``16-mixed``) or
            ``auto``: bf16 mixed precision where the CPU/GPU runs bf16 natively, else fp32.
        checkpoint_every_n_epochs: Keep a checkpoint every N epochs besides ``last.ckpt``;
            None (the ``--time-budget`` recipe): one per tenth of the budget, at least a
            minute apart (every 10 epochs without a budget).
        val_train: Optional labeled folder: kNN bank for the online monitor.
        val_test: Optional labeled folder: kNN queries for the online monitor.
        monitor_every_n_epochs: How often the online kNN monitor runs.
        sync_batchnorm: Synchronise batch-norm statistics across processes (DDP).
        max_bad_fraction: Fail when more than this fraction of images cannot be decoded.
        max_images: Train on a seeded random sample of at most this many of the folder's
            images (the same sample for the same seed and number); only the sample is
            decoded. The planner sets it where a budget shows fewer images than the folder
            holds; None: every image.
        view_pipeline: ``batched``: views made per batch by tensor operations on
            the training device from decoded uint8 images; ``per_image``: the classic
            torchvision/PIL pipeline in DataLoader workers.
        cache_images: Decode every image once into a memory-mapped uint8 cache reused by
            later epochs and runs (batched pipeline); off: decode in workers every epoch.
        cache_dir: Where the decoded cache lives (default ``~/.cache/contrastive/decoded``).
        stored_size: Side of the decoded square images (default: the input size up to 64 px,
            else 8/7 of it, so random crops keep detail).
        channels_last: Use the channels-last memory layout (faster convolutions on CPU/GPU).
        compile: Compile the backbone with ``torch.compile``.
        time_budget: Wall-clock budget for the whole run (``"10m"``, ``"1h"``, seconds);
            the number of steps is planned to fill it. Overrides ``epochs``.
        max_steps: Stop after this many optimiser steps (set by the time-budget planner;
            schedules are defined over it).
        health_every_n_steps: Steps between label-free health measurements (RankMe,
            alignment/uniformity, neighbour stability on a fixed image sample; rounded up
            to the logging interval); 0: only at the end of training.
        health_sample_size: Training images in the fixed health sample; 0 switches the
            health measures off.
        health_max_share: Largest share of the training time the health measures may
            take: a scheduled measurement is skipped while it would push them above it
            (the last one is always taken); 1 never skips.
        keep_best: Keep the checkpoint that is best by this label-free measure (``rank``,
            ``rank_projection``, ``alignment``, ``uniformity``, ``sample_std``,
            ``stability``) as ``checkpoints/best.ckpt`` and ``backbone_best.pt``.
        init_weights: Start the backbone from these weights instead of random ones: a
            torchvision/timm ``state_dict`` file (its classifier is ignored), a run folder or
            its ``backbone.pt``, or a Lightning ``.ckpt`` (its ``backbone.*``). Nothing is
            downloaded.
        init_weights_prefix: In an ``init_weights`` file holding several networks, the
            backbone's weights are those under this prefix (``encoder_q.`` of MoCo v2,
            ``teacher.backbone.`` of DINO).
        init_weights_strict: Refuse init weights with missing or unexpected keys (off: load
            the matching tensors and report the rest); a shape mismatch is always refused.
        projector_sample_size: Training images shown in TensorBoard's Embedding Projector
            at the end of training (their backbone features and thumbnails, in the
            tensorboard logger's folder); 0: none.
        logger: Where metrics go, comma-separated: ``csv`` (always on: ``metrics.csv``),
            ``tensorboard``, ``mlflow`` (``RUN/mlflow.db``), ``wandb`` (offline, ``RUN/wandb``);
            ``auto``: csv, plus tensorboard when it is installed.
        plan: What the recipe planner decided for a ``--time-budget`` run, and why
            (``setting -> "value: reason"``); a record, not an input.
    """

    data: str = ""
    out: str = "runs/run"
    views: ViewConfig = field(default_factory=ViewConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 256
    epochs: int = 100
    seed: int = 0
    deterministic: bool = False
    num_workers: int = 2
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    precision: str = "auto"
    checkpoint_every_n_epochs: int | None = 10
    val_train: str | None = None
    val_test: str | None = None
    monitor_every_n_epochs: int = 5
    sync_batchnorm: bool = False
    max_bad_fraction: float = 0.1
    max_images: int | None = None
    view_pipeline: str = "batched"
    cache_images: bool = True
    cache_dir: str | None = None
    stored_size: int | None = None
    channels_last: bool = True
    compile: bool = False
    time_budget: str | None = None
    max_steps: int | None = None
    health_every_n_steps: int = 400
    health_sample_size: int = 2048
    health_max_share: float = 0.03
    keep_best: str | None = None
    init_weights: str | None = None
    init_weights_prefix: str | None = None
    init_weights_strict: bool = True
    projector_sample_size: int = 1000
    logger: str = "auto"
    plan: dict[str, str] | None = None

    def __post_init__(self) -> None:
        unknown_loggers = set(self.logger_names) - set(LOGGERS)
        if unknown_loggers or not self.logger.strip():
            raise ContrastiveError(
                f"unknown logger {', '.join(sorted(unknown_loggers)) or repr(self.logger)}; "
                f"use auto or a comma-separated list of {', '.join(LOGGERS)}"
            )
        if self.batch_size < 2:
            raise ContrastiveError(f"batch_size must be >= 2, got {self.batch_size}")
        if self.epochs < 1:
            raise ContrastiveError(f"epochs must be >= 1, got {self.epochs}")
        if self.num_workers < 0:
            raise ContrastiveError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.accelerator not in ACCELERATORS:
            raise ContrastiveError(
                f"unknown accelerator {self.accelerator!r}; choose one of {', '.join(ACCELERATORS)}"
            )
        if str(self.precision) not in PRECISIONS:
            raise ContrastiveError(
                f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        if not _valid_devices(self.devices):
            raise ContrastiveError(
                f"devices must be a count (1, 2, ...; -1 for all), auto, or GPU indices like "
                f"0,1; got {self.devices!r}"
            )
        if not 0 <= self.max_bad_fraction <= 1:
            raise ContrastiveError(
                f"max_bad_fraction must be between 0 and 1, got {self.max_bad_fraction}"
            )
        checkpoint_every = self.checkpoint_every_n_epochs
        if (checkpoint_every is not None and checkpoint_every < 1) or (
            self.monitor_every_n_epochs < 1
        ):
            raise ContrastiveError("checkpoint/monitor intervals must be >= 1 epoch")
        if self.max_images is not None and self.max_images < 2:
            raise ContrastiveError(f"max_images must be >= 2, got {self.max_images}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ContrastiveError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.view_pipeline not in VIEW_PIPELINES:
            raise ContrastiveError(
                f"unknown view pipeline {self.view_pipeline!r}; choose one "
                f"of {', '.join(VIEW_PIPELINES)}"
            )
        if (self.val_train is None) != (self.val_test is None):
            raise ContrastiveError("give both val_train and val_test, or neither")
        if self.health_every_n_steps < 0 or self.health_sample_size < 0:
            raise ContrastiveError("health_every_n_steps and health_sample_size must be >= 0")
        if not 0 < self.health_max_share <= 1:
            raise ContrastiveError(
                f"health_max_share must be in (0, 1], got {self.health_max_share}"
            )
        if self.projector_sample_size < 0:
            raise ContrastiveError(
                f"projector_sample_size must be >= 0 (0: none), got {self.projector_sample_size}"
            )
        if self.health_sample_size == 1:
            raise ContrastiveError("health_sample_size must be 0 (off) or at least 2 images")
        if self.keep_best is not None:
            if self.keep_best not in MEASURES:
                raise ContrastiveError(
                    f"unknown keep_best measure {self.keep_best!r}; choose one of "
                    f"{', '.join(MEASURES)}"
                )
            if self.health_sample_size == 0:
                raise ContrastiveError(
                    "keep_best needs the health measures (health_sample_size > 0)"
                )

    @property
    def logger_names(self) -> tuple[str, ...]:
        """The requested loggers, ``csv`` first (``auto`` resolves at training time)."""
        names = [name.strip().lower() for name in self.logger.split(",") if name.strip()]
        return tuple(dict.fromkeys(["csv", *names]))

    @property
    def run_dir(self) -> Path:
        """The run directory as a path."""
        return Path(self.out)

    @property
    def resolved_stored_size(self) -> int:
        """Side of the decoded images the batched pipeline crops from."""
        if self.stored_size is not None:
            return self.stored_size
        size = self.views.input_size
        return size if size <= 64 else int(round(size * 8 / 7))

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-friendly dict of the whole configuration."""
        result = asdict(self)
        result["views"] = self.views.to_dict()
        return result

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Builds a config from a (possibly partial) nested dict; unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ContrastiveError(f"unknown config key(s): {', '.join(sorted(unknown))}")
        components = {
            "backbone": BackboneConfig,
            "method": MethodConfig,
            "loss": LossConfig,
            "optim": OptimConfig,
        }
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key == "views" and isinstance(value, dict):
                kwargs[key] = ViewConfig.from_dict(value)
            elif key in components and isinstance(value, dict):
                kwargs[key] = _component(components[key], key, value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with some top-level fields replaced."""
        return replace(self, **overrides)


#: Records of a run rather than settings: one value each, never split into leaves.
RECORD_FIELDS = ("plan",)


def leaf_settings(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{dotted path: value}`` of a nested (possibly partial) config dict:
    ``{"optim": {"base_learning_rate": 0.3}}`` -> ``{"optim.base_learning_rate": 0.3}``."""
    leaves: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key not in RECORD_FIELDS:
            leaves |= leaf_settings(value, f"{prefix}{key}.")
        else:
            leaves[prefix + key] = value
    return leaves


def nested_settings(leaves: dict[str, Any]) -> dict[str, Any]:
    """The nested config dict of ``{dotted path: value}`` (the inverse of
    :func:`leaf_settings`)."""
    values: dict[str, Any] = {}
    for path, value in leaves.items():
        *parents, name = path.split(".")
        level = values
        for parent in parents:
            level = level.setdefault(parent, {})
        level[name] = value
    return values


def _component(component: type, key: str, values: dict[str, Any]) -> Any:
    known = {f.name for f in fields(component)}
    unknown = set(values) - known
    if unknown:
        raise ContrastiveError(f"unknown {key} option(s): {', '.join(sorted(unknown))}")
    return component(**values)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a YAML or JSON config file into a dict, with clear errors."""
    file = Path(path)
    if not file.is_file():
        raise ContrastiveError(f"config file not found: {file}")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ContrastiveError(f"cannot parse config file {file}: {error}") from error
    if not isinstance(values, dict):
        raise ContrastiveError(f"config file {file} must hold a mapping at the top level")
    return values


def dump_config(config: TrainConfig) -> str:
    """The configuration as YAML text."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
