"""Representation collapse: every input mapped to (nearly) the same embedding.

A collapsed encoder makes the contrastive loss useless while it stays finite, so nothing
else flags it. The measure is Lightly's ``std_of_l2_normalized`` of the projection head's
output: about ``1/sqrt(d)`` for embeddings spread over the sphere, 0 when collapsed.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytorch_lightning as pl
from lightly.utils.debug import std_of_l2_normalized
from torch import Tensor, nn

from contrastive.training.health_rules import (
    COLLAPSE_STD_FRACTION,
    COLLAPSE_STD_METRIC,
    collapse_threshold,
)


class RepresentationCollapseWarning(UserWarning):
    """The embeddings of different images have become (nearly) identical."""


class CollapseMonitor(pl.Callback):
    """Logs ``monitor/collapse_std`` every step; warns once if it falls far below ``1/sqrt(d)``.

    The projection head's output of the training step is reused through a forward hook, so
    no extra forward pass is run; the comparison (a device sync) happens every
    ``check_every_n_steps`` steps only.

    Args:
        check_every_n_steps: Steps between comparisons with the threshold.
        threshold_fraction: Warn when ``std < threshold_fraction / sqrt(d)``.
    """

    def __init__(
        self, check_every_n_steps: int = 50, threshold_fraction: float = COLLAPSE_STD_FRACTION
    ) -> None:
        self.check_every_n_steps = max(1, check_every_n_steps)
        self.threshold_fraction = threshold_fraction
        self.warned = False
        self._embeddings: Tensor | None = None
        self._hook: Any = None

    def _capture(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self._embeddings = output.detach()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        head = pl_module.method.projection_head
        self._hook = head.register_forward_hook(self._capture)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove_hook()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._remove_hook()

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._embeddings = None

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        embeddings, self._embeddings = self._embeddings, None
        if embeddings is None or embeddings.ndim != 2 or embeddings.shape[0] < 2:
            return
        std = std_of_l2_normalized(embeddings.float())
        pl_module.log(COLLAPSE_STD_METRIC, std, on_step=True, on_epoch=False)
        step = trainer.global_step
        if self.warned or step % self.check_every_n_steps != 0:
            return
        dim = embeddings.shape[1]
        threshold = collapse_threshold(dim, self.threshold_fraction)
        value = float(std)
        if value < threshold and trainer.is_global_zero:
            self.warned = True
            warnings.warn(
                f"representation collapse at step {step}: std of normalised embeddings "
                f"{value:.2g} < {threshold:.2g} (healthy ~{1 / math.sqrt(dim):.2g}); try a lower "
                f"learning rate, a higher temperature or stronger augmentations",
                RepresentationCollapseWarning,
                # Attributed here: the caller is Lightning's hook code, whose warnings the
                # console hides (module="pytorch_lightning"), and this one with them.
                stacklevel=1,
            )
