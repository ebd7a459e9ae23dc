"""The LightningModule: wires a method (backbone + head + loss) to optimiser and logging.

All modelling lives in :mod:`contrastive.methods`; this module only connects it to
Lightning: the training step, the schedule, logging (loss, lr, images/s) and the extra
checkpoint state (MoCo's queue).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from contrastive.backbones import build_backbone
from contrastive.errors import ContrastiveError
from contrastive.methods import build_method
from contrastive.training.config import TrainConfig
from contrastive.training.lightning_compat import align_logged_steps
from contrastive.training.optim import (
    ContinuableCosineWarmup,
    build_optimizer,
    build_scheduler,
    continue_schedule,
)
from contrastive.training.resumable import CHECKPOINT_KEY as LOADER_POSITION_KEY
from contrastive.training.seeding import step_generator
from contrastive.training.tensor_float32 import TensorFloat32

log = logging.getLogger(__name__)


class NonFiniteLossError(ContrastiveError):
    """The loss became NaN or infinite."""


class ContrastiveModule(pl.LightningModule):
    """Trains one method. The method's parts become this module's children, so checkpoint
    keys read ``backbone.*``, ``projection_head.*`` (and ``momentum_*`` for MoCo).

    Args:
        config: :meth:`TrainConfig.to_dict` output (a plain dict, stored in checkpoints).
        view_maker: Optional module turning a batch of uint8 images into views on the
            training device (the batched pipeline); without it, batches already hold views.
    """

    def __init__(self, config: dict[str, Any], view_maker: nn.Module | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.config = TrainConfig.from_dict(config)
        backbone, self.feature_dim = build_backbone(self.config.backbone)
        # Gathering negatives across processes is a no-op in a single process, so it is
        # always on: DDP then sees the negatives of the global batch.
        method = build_method(
            self.config.method,
            self.config.loss,
            backbone,
            self.feature_dim,
            gather_distributed=True,
        )
        for name, child in method.named_children():
            self.add_module(name, child)
        # Registered through its children above; stored unregistered to avoid duplicate keys.
        self.__dict__["method"] = method
        self.view_maker = view_maker
        if self.config.channels_last:
            self.method.to(memory_format=torch.channels_last)
        if self.config.compile:
            self.method.backbone.compile()
        self._last_step_time: float | None = None
        self._images_per_second = 0.0
        # The first non-finite loss, kept on the device: step (-1 while every loss was
        # finite), epoch and value.
        self._first_bad: tuple[Tensor, Tensor, Tensor] | None = None
        # Set when fit restores a checkpoint: its schedule may need a new end. The loader
        # position it holds (cached pipeline) says where the restored run goes on.
        self._restored = False
        self._restored_position: dict[str, int] | None = None
        self._steps_to_align = False

    @property
    def images_per_second(self) -> float:
        """Training images per second, smoothed over recent steps (0 before two steps)."""
        return self._images_per_second

    @property
    def backbone(self) -> nn.Module:  # type: ignore[override]
        """The encoder being trained."""
        return self.method.backbone

    def forward(self, images: Tensor) -> Tensor:
        """Backbone features ``(B, feature_dim)`` of images ``(B, 3, H, W)``."""
        return self.backbone(images)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self.prepare_batch(batch) if self.trainer.training else batch

    def prepare_batch(self, batch: Any) -> Any:
        """Makes the views of a uint8 batch (batched pipeline) in the right memory layout.

        Returns:
            ``(views, ...)`` where ``views`` is a list of ``(B, 3, H, W)`` tensors.
        """
        if self.view_maker is not None:
            images, indices = batch
            # Seeded by position, not by the global random state, so a resumed run makes
            # the same views as an unbroken one.
            generator = step_generator(
                self.config.seed, self.global_step, self.global_rank, images.device
            )
            batch = self.view_maker(images, generator), indices
        if self.config.channels_last:
            views = [view.contiguous(memory_format=torch.channels_last) for view in batch[0]]
            batch = (views, *batch[1:])
        return batch

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._steps_to_align:
            # Only here: Lightning moves its restored step count when the epoch loop starts,
            # after every epoch-start hook.
            self._steps_to_align = False
            align_logged_steps(self.trainer)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        views = batch[0]
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        loss = self.method.training_loss(views, progress=min(self.global_step / total, 1.0))
        self._note_if_not_finite(loss.detach())
        if self._on_interval():
            self.check_loss_finite()
        self._log_step(loss, batch_size=views[0].shape[0])
        return loss

    def _on_interval(self) -> bool:
        """Whether this step is one of the every-N steps (Lightning's ``log_every_n_steps``)
        at which the host reads device values: the rest queue their work without waiting."""
        return (self.global_step + 1) % max(self.trainer.log_every_n_steps, 1) == 0

    def _note_if_not_finite(self, loss: Tensor) -> None:
        """Records the first non-finite loss on the device: no host-device sync."""
        if self._first_bad is None or self._first_bad[0].device != loss.device:
            never = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._first_bad = (never, never, torch.zeros_like(loss))
        step, epoch, value = self._first_bad
        first = (step < 0) & ~torch.isfinite(loss)
        # Python numbers enter device kernels as arguments: no copy from the host.
        self._first_bad = (
            torch.where(first, self.global_step, step),
            torch.where(first, self.current_epoch, epoch),
            torch.where(first, loss, value),
        )

    def check_loss_finite(self) -> None:
        """Stops the run if any loss so far was NaN or infinite (one host-device sync).

        Called every ``log_every_n_steps`` steps and when training ends, on every DDP
        process at the same step: the decision is shared, so all processes stop together.

        Raises:
            NonFiniteLossError: Naming the first bad loss, its step and epoch.
        """
        if self._first_bad is None:
            return
        step, epoch, value = (tensor.item() for tensor in self._first_bad)
        bad = step >= 0
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        if step < 0:
            raise NonFiniteLossError(
                f"loss became non-finite in another process by step {self.global_step} "
                f"(epoch {self.current_epoch}); try a lower learning rate (--lr)"
            )
        raise NonFiniteLossError(
            f"loss became {value} at step {step} (epoch {epoch}); try a lower learning rate (--lr)"
        )

    def on_train_epoch_end(self) -> None:
        # Before the epoch's checkpoint (Lightning saves after this hook): none holds NaNs.
        self.check_loss_finite()

    def on_train_end(self) -> None:
        # The last steps since the final interval are checked too.
        self.check_loss_finite()

    def _log_step(self, loss: Tensor, batch_size: int) -> None:
        now = time.perf_counter()
        if self._last_step_time is not None:
            rate = batch_size * self.trainer.world_size / max(now - self._last_step_time, 1e-9)
            # Smoothed so the progress bar is readable.
            self._images_per_second = (
                rate
                if self._images_per_second == 0.0
                else 0.9 * self._images_per_second + 0.1 * rate
            )
        self._last_step_time = now
        # The loss stays on the device; floats are copied to it only on the logging interval.
        self.log("loss", loss, prog_bar=True)
        if not self._on_interval():
            return
        learning_rate = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("lr", learning_rate, prog_bar=True)
        if self._images_per_second > 0:
            self.log("img_per_s", self._images_per_second, prog_bar=True)

    def on_train_epoch_start(self) -> None:
        self._last_step_time = None

    def on_train_start(self) -> None:
        if self._restored:
            self._restored = False
            self._continue_restored_schedule()

    def _continue_restored_schedule(self) -> None:
        """Ends a restored schedule where this fit ends.

        Lightning restores the scheduler's state, and with it the end (``max_epochs``, in
        steps) of the run that saved it: a run resumed with more epochs trained its added
        epochs at the final, near-zero rate. Runs just after the restore (and after a time
        budget's plan, which sets its own end); an unchanged run is left as it was. The new
        schedule is reached by a ramp from the current rate (:func:`continue_schedule`).
        """
        total = self._total_steps_after_restore()
        for scheduler_config in self.trainer.lr_scheduler_configs:
            scheduler = scheduler_config.scheduler
            if not isinstance(scheduler, ContinuableCosineWarmup):
                continue
            old = scheduler.max_epochs
            # A total at or below the restored step leaves nothing to schedule.
            if total == old or total <= scheduler.last_epoch:
                continue
            continue_schedule(scheduler, total)
            if self.trainer.is_global_zero:
                longer = total > old
                log.info(
                    "learning-rate schedule %s: %d -> %d steps (from step %d, a %d-step ramp "
                    "from lr %.3g to the cosine schedule of the %s run)",
                    "extended" if longer else "shortened",
                    old,
                    total,
                    scheduler.last_epoch,
                    scheduler.ramp_steps,
                    scheduler.get_last_lr()[0],
                    "longer" if longer else "shorter",
                )

    def _total_steps_after_restore(self) -> int:
        """The step at which this fit ends, counted from the restored step.

        Lightning's estimate counts every epoch at today's batches per epoch; where the
        folder changed since the checkpoint, the epochs before it had another number (a
        4-step epoch, then 3-step ones, ended at step 7 of an estimated 6). With the
        checkpoint's loader position the steps left are counted from where it resumes.
        """
        trainer = self.trainer
        estimated = max(int(trainer.estimated_stepping_batches), 1)
        position = self._restored_position
        if position is None or trainer.max_epochs is None or trainer.max_epochs < 0:
            return estimated
        batches = int(trainer.num_training_batches)
        left = (trainer.max_epochs - int(position["epoch"])) * batches - int(position["batch"])
        total = self.global_step + max(left, 0)
        if trainer.max_steps != -1:
            total = min(total, trainer.max_steps)
        return max(total, 1)

    def configure_callbacks(self) -> list[pl.Callback]:
        # Any Trainer fitting this module (the CLI's, a notebook's) runs fp32 maths on TF32
        # tensor cores on a CUDA GPU.
        return [TensorFloat32()]

    def configure_optimizers(self) -> Any:
        batch = self.config.batch_size * self.trainer.world_size
        trainable = [
            m for m in self.method.children() if any(p.requires_grad for p in m.parameters())
        ]
        optimizer = build_optimizer(trainable, self.config.optim, batch)
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = build_scheduler(optimizer, self.config.optim, total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightly's memory bank keeps its queue in non-persistent buffers.
        bank = getattr(self.method.criterion, "memory_bank", None)
        if bank is not None and bank.size[0] > 0:
            checkpoint["memory_bank"] = {"bank": bank.bank.clone(), "ptr": bank.bank_ptr.clone()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored = True
        self._restored_position = checkpoint.get(LOADER_POSITION_KEY)
        self._steps_to_align = True
        state = checkpoint.get("memory_bank")
        bank = getattr(self.method.criterion, "memory_bank", None)
        if state is not None and bank is not None:
            bank.bank = state["bank"].to(bank.bank.device)
            bank.bank_ptr = state["ptr"].to(bank.bank_ptr.device)
