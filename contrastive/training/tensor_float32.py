"""TF32 tensor cores for the fp32 maths of a run on a CUDA GPU; CPU runs are left alone.

Matrix products and convolutions in float32 (the views' colour maths, the loss's similarity
matrix, a ``32-true`` run's whole model) run several times faster on Ampere and newer GPUs
when they may round their inputs to TF32 (10-bit mantissa, fp32 range and accumulation),
which contrastive training tolerates as it tolerates bf16. PyTorch leaves matmuls in full
fp32 by default (convolutions already use TF32). The setting is process-wide and also
reaches oneDNN's CPU matmuls, so it is made only for a run whose accelerator is CUDA, only
if nobody chose a precision before, and it is put back when the run ends.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import Accelerator, CUDAAccelerator

#: ``torch.set_float32_matmul_precision`` value of a CUDA run: TF32 tensor cores.
CUDA_MATMUL_PRECISION = "high"
_DEFAULT = "highest"


def float32_matmul_precision(accelerator: str | Accelerator) -> str | None:
    """The fp32 matmul precision a run on ``accelerator`` should use, or None to leave it.

    Args:
        accelerator: Lightning's resolved accelerator (``trainer.accelerator``), or a name:
            ``cuda`` and ``gpu`` mean CUDA; ``auto`` is not resolved here and gets None.

    Returns:
        ``"high"`` (TF32) on CUDA; None for the CPU and everything else.
    """
    if isinstance(accelerator, str):
        return CUDA_MATMUL_PRECISION if accelerator.lower() in ("cuda", "gpu") else None
    return CUDA_MATMUL_PRECISION if isinstance(accelerator, CUDAAccelerator) else None


class TensorFloat32(pl.Callback):
    """Turns TF32 on in every training process of a CUDA run, and back off after it.

    ``setup`` runs in each process once Lightning has launched it (so also in processes
    started by ``ddp_spawn``, which inherit no global state) and after the accelerator is
    resolved. A precision already chosen (``torch.set_float32_matmul_precision`` or
    ``torch.backends.cuda.matmul.fp32_precision``) is kept.
    """

    def __init__(self) -> None:
        self._restore: str | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        wanted = float32_matmul_precision(trainer.accelerator)
        if wanted is None or self._restore is not None:
            return
        try:
            current = torch.get_float32_matmul_precision()
        except RuntimeError:  # set through the per-backend API: the user's choice
            return
        if current == _DEFAULT:
            torch.set_float32_matmul_precision(wanted)
            self._restore = current

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._restore is not None:
            torch.set_float32_matmul_precision(self._restore)
            self._restore = None
