"""The methods by name, and :func:`build_method`: a new method is a short module plus a line
in :data:`METHODS` (and its name in :data:`~contrastive.methods.config.METHOD_NAMES`)."""

from __future__ import annotations

from torch import nn

from contrastive.errors import ContrastiveError
from contrastive.losses import LossConfig, build_loss
from contrastive.methods.config import DEFAULT_QUEUE_SIZE, MethodConfig
from contrastive.methods.moco import MoCo
from contrastive.methods.simclr import SimCLR

#: Adding a method: a short module with a class like :class:`SimCLR`, a line here and its
#: name in :data:`~contrastive.methods.config.METHOD_NAMES`.
METHODS: dict[str, type[nn.Module]] = {
    "simclr": SimCLR,
    "moco": MoCo,
}


def build_method(
    config: MethodConfig,
    loss: LossConfig,
    backbone: nn.Module,
    feature_dim: int,
    gather_distributed: bool = False,
) -> nn.Module:
    """Builds a method around ``backbone`` with its loss.

    Raises:
        ContrastiveError: If the method name is unknown.
    """
    if config.name not in METHODS:
        raise ContrastiveError(
            f"unknown method {config.name!r}; choose one of {', '.join(METHODS)}"
        )
    method_class = METHODS[config.name]
    # Unplanned (no data set at hand, as in tests and exports): MoCo v2's own queue.
    queue_size = DEFAULT_QUEUE_SIZE if config.queue_size is None else config.queue_size
    memory_bank_size = (
        (queue_size, config.projection_output_dim) if method_class.uses_memory_bank else 0
    )
    criterion = build_loss(
        loss,
        method_class.default_temperature,
        memory_bank_size,
        gather_distributed=gather_distributed,
    )
    hidden = config.projection_hidden_dim or feature_dim
    resolved = MethodConfig(**{**config.__dict__, "projection_hidden_dim": hidden})
    return method_class(backbone, feature_dim, resolved, criterion)
