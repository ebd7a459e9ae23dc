"""Label-free health of a run: measures on a fixed image sample, warnings that say what to do.

Every ``health_every_n_steps`` steps and at the end of training, :class:`HealthMonitor`
embeds the same ``health_sample_size`` training images (eval mode, no gradients, the
training RNG untouched) and logs, as ``monitor/*`` metrics (``metrics.csv``, any other
logger, and the epoch line):

* ``monitor/rank``: RankMe of the backbone features of the whole images;
* ``monitor/rank_projection``: RankMe of their projections;
* ``monitor/alignment`` and ``monitor/uniformity`` of the projections of two fixed random
  views (the run's view distributions, the same views every time) of the first 512 sample
  images;
* ``monitor/sample_std``: Lightly's ``std_of_l2_normalized`` of the projections;
* ``monitor/stability``: the share of each image's 10 nearest neighbours (backbone
  features, cosine) kept since the previous measurement.

The rules that turn the history into warnings with remedies (collapse, dimensional collapse,
plateau) live in :mod:`contrastive.training.health_rules`; ``contrastive health RUN``
applies the same rules to a finished run. The measures live in
:mod:`contrastive.evaluation.label_free`.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from contrastive.data.cache import square_uint8
from contrastive.data.folder import load_rgb
from contrastive.encoder import evaluation_mode
from contrastive.errors import ContrastiveError
from contrastive.evaluation.label_free import (
    alignment,
    effective_rank,
    nearest_neighbours,
    neighbour_overlap,
    normalized_std,
    uniformity,
)
from contrastive.training.checkpoint_io import save_torch_file
from contrastive.training.health_rules import MEASURES, diagnose, spread_is_calibrated
from contrastive.views.batched import BatchedViews
from contrastive.views.config import ViewConfig
from contrastive.views.per_image import eval_resize_crop, evaluation_resize

log = logging.getLogger(__name__)


#: Sample images whose two views give alignment and uniformity.
VIEW_SAMPLE_SIZE = 512
#: Sample images timed to price the measurement at the end of a run before any other was
#: taken (one forward pass, after a warm-up of 8). Scaled to a whole measurement, the price
#: came out 1.2-1.4x the measured cost on CIFAR-10 (24 px views, 3.2-3.5 s) and the flowers
#: (48 px views, 4.3 s) on 2 busy CPU cores; the probe itself took 0.2-0.3 s.
PRICE_PROBE_IMAGES = 128
#: Neighbours per image for the stability measure.
STABILITY_K = 10


class RunHealthWarning(UserWarning):
    """A label-free measure says the run is not learning well; the message says what to do."""


class HealthSample:
    """A fixed sample of training images, decoded once, for repeated measurement.

    Args:
        paths: The training images.
        view_config: The run's views (evaluation transform and view distributions).
        size: Images in the sample (all of them if fewer).
        seed: Chooses the sample and the views; the same seed gives the same images and views.
        stored_size: Side the views are cropped from (the batched pipeline's stored size).

    Raises:
        ContrastiveError: If fewer than two sample images can be decoded.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        view_config: ViewConfig,
        size: int = 2048,
        seed: int = 0,
        stored_size: int | None = None,
    ) -> None:
        self.view_config = view_config
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(paths), generator=generator).tolist()
        clean_transform = eval_resize_crop(view_config)
        side = stored_size or view_config.input_size
        # Nothing larger than this is kept: large JPEGs decode at reduced scale.
        needed = max(side, evaluation_resize(view_config))
        clean, source = [], []
        for index in order:
            if len(clean) == size:
                break
            try:
                image = load_rgb(paths[index], min_side=needed)
            except Exception:  # noqa: BLE001 - an unreadable image is just not sampled
                continue
            clean.append(np.asarray(clean_transform(image), dtype=np.uint8).transpose(2, 0, 1))
            source.append(square_uint8(image, side))
        if len(clean) < 2:
            raise ContrastiveError(
                f"the health sample needs at least 2 readable images, found {len(clean)}"
            )
        self.clean = torch.from_numpy(np.stack(clean))
        self.source = torch.from_numpy(np.stack(source))
        self.views = BatchedViews(view_config, num_views=2)
        mean = torch.tensor(view_config.mean).view(1, 3, 1, 1)
        std = torch.tensor(view_config.std).view(1, 3, 1, 1)
        self._scale, self._shift = 1.0 / (255.0 * std), -mean / std

    def __len__(self) -> int:
        return len(self.clean)

    def clean_batch(self, rows: slice, device: torch.device) -> Tensor:
        """Whole images through the evaluation transform, normalised ``(B, 3, s, s)``."""
        images = self.clean[rows].to(device).float()
        return images * self._scale.to(device) + self._shift.to(device)

    def view_batch(self, rows: slice, device: torch.device) -> list[Tensor]:
        """Two random views of the images, the same every call."""
        generator = torch.Generator(device=device).manual_seed(self.seed + rows.start)
        return self.views.to(device)(self.source[rows].to(device), generator)


def _features_and_projections(
    backbone: nn.Module, projection_head: nn.Module, images: Tensor, channels_last: bool
) -> tuple[Tensor, Tensor]:
    """``(B, D)`` backbone features and their projections, as float32."""
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    features = backbone(images).flatten(start_dim=1)
    return features.float(), projection_head(features).float()


@torch.no_grad()
def measure_health(
    backbone: nn.Module,
    projection_head: nn.Module,
    sample: HealthSample,
    previous_neighbours: Tensor | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    channels_last: bool = False,
) -> tuple[dict[str, float], Tensor, tuple[int, int]]:
    """The label-free measures of an encoder on a sample, in eval mode without gradients.

    Modes are restored afterwards and batch-norm statistics are not updated.

    Returns:
        ``({short name: value}, neighbour indices (N, k) for the next stability,
        (feature width, projection width))``; ``stability`` is NaN without
        ``previous_neighbours``.
    """
    device = torch.device(device)

    def embed(images: Tensor) -> tuple[Tensor, Tensor]:
        return _features_and_projections(backbone, projection_head, images, channels_last)

    # Alignment and uniformity settle on far fewer images than the rank needs; two views
    # of the whole sample would double the cost.
    views_size = min(len(sample), VIEW_SAMPLE_SIZE)
    features, projections, first, second = [], [], [], []
    with evaluation_mode(backbone, projection_head):
        for start in range(0, len(sample), batch_size):
            rows = slice(start, min(start + batch_size, len(sample)))
            batch_features, batch_projections = embed(sample.clean_batch(rows, device))
            features.append(batch_features)
            projections.append(batch_projections)
            if start < views_size:
                rows = slice(start, min(start + batch_size, views_size))
                view_one, view_two = sample.view_batch(rows, device)
                first.append(embed(view_one)[1])
                second.append(embed(view_two)[1])
    all_features, all_projections = torch.cat(features), torch.cat(projections)
    first_views, second_views = torch.cat(first), torch.cat(second)
    neighbours = nearest_neighbours(all_features, STABILITY_K)
    values = {
        "rank": effective_rank(all_features),
        "rank_projection": effective_rank(all_projections),
        "alignment": alignment(first_views, second_views),
        "uniformity": (uniformity(first_views) + uniformity(second_views)) / 2,
        "sample_std": normalized_std(all_projections),
        "stability": (
            neighbour_overlap(previous_neighbours, neighbours)
            if previous_neighbours is not None
            else math.nan
        ),
    }
    return values, neighbours.cpu(), (all_features.shape[1], all_projections.shape[1])


class HealthMonitor(pl.Callback):
    """Measures, logs and diagnoses the label-free health of a run (see the module docstring).

    Args:
        paths: The training images the fixed sample is drawn from.
        view_config: The run's views.
        every_n_steps: Steps between measurements, rounded up to a multiple of the trainer's
            logging interval so every value reaches the metrics file; 0: only at the end.
        sample_size: Images in the sample.
        seed: Chooses the sample and its views.
        stored_size: Side the views are cropped from.
        keep_best: A :data:`MEASURES` name: after each measurement that improves it, save
            ``RUN/checkpoints/best.ckpt`` and ``RUN/backbone_best.pt``.
        run_dir: The run directory (needed with ``keep_best``).
        batch_size: Images per forward pass.
        max_share: Largest share of the training time the measures may take: a scheduled
            measurement that would push them above it is skipped (the one at the end of
            training never is); 1 never skips.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        view_config: ViewConfig,
        every_n_steps: int = 400,
        sample_size: int = 2048,
        seed: int = 0,
        stored_size: int | None = None,
        keep_best: str | None = None,
        run_dir: str | os.PathLike | None = None,
        batch_size: int = 256,
        max_share: float = 0.03,
        spread_calibrated: bool = True,
    ) -> None:
        if keep_best is not None and keep_best not in MEASURES:
            raise ContrastiveError(
                f"unknown --keep-best measure {keep_best!r}; choose one of {', '.join(MEASURES)}"
            )
        if keep_best is not None and run_dir is None:
            raise ContrastiveError("keep_best needs the run directory")
        self.paths = list(paths)
        self.spread_calibrated = spread_calibrated
        self.view_config = view_config
        self.every_n_steps = max(0, every_n_steps)
        self.sample_size, self.seed, self.stored_size = sample_size, seed, stored_size
        self.keep_best = keep_best
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.batch_size = batch_size
        self.max_share = max_share
        self.skipped: set[int] = set()
        self.last_cost: float | None = None
        self.sample: HealthSample | None = None
        self.interval = 0
        self.history: list[dict[str, float]] = []
        self.neighbours: Tensor | None = None
        self.best: float | None = None
        self.warned: set[str] = set()
        self.seconds = 0.0
        self.training_started: float | None = None
        self.widths = (1, 1)
        self.failed = False
        self.first_price: float | None = None
        self._module: pl.LightningModule | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Decodes the sample once, before training, so bad input fails early."""
        if self.sample is None:
            self.sample = HealthSample(
                self.paths, self.view_config, self.sample_size, self.seed, self.stored_size
            )
        log_every = max(1, trainer.log_every_n_steps)
        self.interval = math.ceil(self.every_n_steps / log_every) * log_every

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.training_started = time.perf_counter()
        self._module = pl_module  # for the price of the first measurement, if asked

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Says what the measures cost, so a user can weigh the interval against it."""
        if self.training_started is None or not self.history or not trainer.is_global_zero:
            return
        training = time.perf_counter() - self.training_started
        skipped = (
            f"; {len(self.skipped)} scheduled measurement(s) skipped to stay under "
            f"{100 * self.max_share:g}% (--health-max-share; the last measurement is always "
            "taken)"
            if self.skipped
            else ""
        )
        log.info(
            "label-free health: %d measurement%s, %.1f s = %.1f%% of the %.0f s of training "
            "(--health-every-n-steps %d, --health-sample-size %d%s)",
            len(self.history),
            "" if len(self.history) == 1 else "s",
            self.seconds,
            100 * self.seconds / max(training, 1e-9),
            training,
            self.every_n_steps,
            self.sample_size,
            skipped,
        )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        step = trainer.global_step
        if self.interval and step % self.interval == 0 and not self._measured(step):
            if self._end_is_near(trainer, step):
                return  # the measurement at the end comes first
            if self._affordable(trainer):
                self._measure_and_log(trainer, pl_module, on_step=True)
            else:
                self.skipped.add(step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        last_epoch = (
            trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        )
        out_of_steps = (
            trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        )
        if (last_epoch or out_of_steps or trainer.should_stop) and not self._measured(
            trainer.global_step
        ):
            self._measure_and_log(trainer, pl_module, on_step=False)

    def seconds_after_training(self) -> float:
        """What the measurement at the end of training will take, priced at the last one.

        Before any, a forward pass of :data:`PRICE_PROBE_IMAGES` sample images is timed once
        and scaled to a measurement: a run too short to measure mid-way still budgets for
        its one measurement (26 s of a 2-minute budget on 2 loaded cores, past the deadline).
        """
        if self.last_cost is not None:
            return self.last_cost
        if self.first_price is None and self._module is not None and not self.failed:
            self.first_price = self._price_first_measurement(self._module)
        return self.first_price or 0.0

    @torch.no_grad()
    def _price_first_measurement(self, pl_module: pl.LightningModule) -> float:
        """Seconds of one measurement, from a timed forward pass of a few sample images
        (whole images and views priced alike, at the evaluation size: an upper side)."""
        if self.sample is None or len(self.sample) == 0:
            return 0.0
        method = pl_module.method  # type: ignore[attr-defined]
        channels_last = getattr(getattr(pl_module, "config", None), "channels_last", False)
        count = min(PRICE_PROBE_IMAGES, len(self.sample))

        def forward(rows: slice) -> None:
            images = self.sample.clean_batch(rows, pl_module.device)
            _features_and_projections(
                method.backbone, method.projection_head, images, channels_last
            )

        try:
            with evaluation_mode(method.backbone, method.projection_head):
                forward(slice(0, min(8, count)))  # first-call set-up is not the price
                started = time.perf_counter()
                forward(slice(0, count))
                if pl_module.device.type == "cuda":
                    torch.cuda.synchronize(pl_module.device)
                seconds = time.perf_counter() - started
        except Exception:  # noqa: BLE001 - a price is a guess; the measurement reports errors
            return 0.0
        images = len(self.sample) + 2 * min(len(self.sample), VIEW_SAMPLE_SIZE)
        return seconds / count * images

    def _end_is_near(self, trainer: pl.Trainer, step: int) -> bool:
        """Whether training ends within half an interval, where the last measurement is
        taken anyway (a 1-minute budget run of 452 steps measured at 400 and 452: 8% of its
        training time on 2 cores instead of 4%)."""
        return trainer.max_steps > 0 and trainer.max_steps - step < self.interval / 2

    def _affordable(self, trainer: pl.Trainer) -> bool:
        """Whether one more measurement, priced at the last one, keeps the measures within
        ``max_share`` of the training time so far (rank 0 decides for every process, so
        that all of them measure, and save the best checkpoint, at the same steps)."""
        if self.max_share >= 1 or self.last_cost is None or self.training_started is None:
            return True
        elapsed = time.perf_counter() - self.training_started
        affordable = self.seconds + self.last_cost <= self.max_share * elapsed
        return bool(trainer.strategy.broadcast(affordable, src=0))

    def _measured(self, step: int) -> bool:
        return bool(self.history) and int(self.history[-1]["step"]) == step

    def _measure_and_log(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, on_step: bool
    ) -> None:
        if self.failed:
            return
        started = time.perf_counter()
        method = pl_module.method  # type: ignore[attr-defined]
        assert self.sample is not None
        step = trainer.global_step
        previous = self.neighbours
        if previous is not None and previous.shape[0] != len(self.sample):
            # Restored from a checkpoint of another file list (--resume after the folder
            # changed): nothing to compare with, and a mismatch would end the measures.
            previous = None
        try:
            values, self.neighbours, self.widths = measure_health(
                method.backbone,
                method.projection_head,
                self.sample,
                previous,
                pl_module.device,
                self.batch_size,
                channels_last=getattr(getattr(pl_module, "config", None), "channels_last", False),
            )
        except Exception as error:  # noqa: BLE001 - a side measurement must not cost the run
            # (e.g. out of device memory, or an SVD that does not converge); Ctrl-C and
            # SIGTERM are not Exceptions and still stop the run.
            self.failed = True
            if trainer.is_global_zero:
                log.warning(
                    "label-free health measurement at step %d failed (%s: %s); training "
                    "goes on without the health measures (--health-sample-size 0 turns "
                    "them off)",
                    step,
                    type(error).__name__,
                    error,
                )
            return
        self.skipped.discard(step)
        self.history.append({"step": float(step), **values})
        for name, value in values.items():
            if math.isfinite(value):
                pl_module.log(MEASURES[name].metric, value, on_step=on_step, on_epoch=not on_step)
        self._keep_best(trainer, pl_module, values)
        self.last_cost = time.perf_counter() - started
        self.seconds += self.last_cost
        if trainer.is_global_zero:
            self._warn(trainer, pl_module)

    def _keep_best(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float]
    ) -> None:
        if self.keep_best is None or self.run_dir is None:
            return
        value = values[self.keep_best]
        sign = 1 if MEASURES[self.keep_best].higher_is_better else -1
        if not math.isfinite(value) or (self.best is not None and sign * value <= sign * self.best):
            return
        self.best = value
        trainer.save_checkpoint(self.run_dir / "checkpoints" / "best.ckpt")
        if trainer.is_global_zero:
            backbone = pl_module.method.backbone  # type: ignore[attr-defined]
            save_torch_file(
                backbone.state_dict(), self.run_dir / "backbone_best.pt", what="best backbone"
            )
            log.info(
                "best %s so far (%.4g) at step %d: saved",
                self.keep_best,
                value,
                trainer.global_step,
            )

    def _warn(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from contrastive.training.progress import total_steps

        feature_dim, projection_dim = self.widths
        measured_on = None if self.sample is None else len(self.sample)
        for finding in diagnose(
            self.history,
            feature_dim,
            projection_dim,
            total_steps(trainer),
            measured_on,
            self.spread_calibrated,
        ):
            if finding.kind not in self.warned:
                self.warned.add(finding.kind)
                warnings.warn(finding.message, RunHealthWarning, stacklevel=2)

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "neighbours": self.neighbours,
            "best": self.best,
            "warned": sorted(self.warned),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.neighbours = state_dict.get("neighbours")
        self.best = state_dict.get("best")
        self.warned = set(state_dict.get("warned", []))


def health_callbacks(config: Any, paths: Sequence[str | os.PathLike]) -> list[pl.Callback]:
    """The label-free health monitor of a run, as configured (empty when switched off).

    Args:
        config: The run's :class:`~contrastive.training.config.TrainConfig`.
        paths: The readable training images.
    """
    if config.health_sample_size == 0:
        if config.keep_best is not None:
            raise ContrastiveError(
                "--keep-best needs the health measures: set --health-sample-size > 0"
            )
        return []
    return [
        HealthMonitor(
            paths,
            config.views,
            every_n_steps=config.health_every_n_steps,
            sample_size=config.health_sample_size,
            seed=config.seed,
            stored_size=config.resolved_stored_size,
            keep_best=config.keep_best,
            run_dir=config.run_dir,
            max_share=config.health_max_share,
            spread_calibrated=spread_is_calibrated(config.method.name),
        )
    ]
