"""What one optimizer step of a :class:`~deepseek.training.strategy.Strategy` is told at set-up
(:class:`StepSettings`) and what it returns (:class:`StepResult`), and the optimizer factory a
strategy builds its optimizer with. :mod:`deepseek.training.strategy` re-exports them: import
them from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

OptimizerFactory = Callable[[Iterable[Any]], "torch.optim.Optimizer"]
"""Builds the optimizer from parameters or parameter groups (decay / no-decay)."""


@dataclass(frozen=True)
class StepSettings:
    """What a strategy's step needs to know at set-up."""

    grad_clip: float = 1.0
    """Clip the global gradient norm to this (``train.grad_clip``; 0: measure only)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (``train.grad_accum``)."""
    model_name: str = "model"
    """The registered model's name, for error messages."""
    skip_nonfinite: bool = False
    """``train.on_nonfinite = "skip"``: a step whose loss or gradient norm is not finite is not
    applied (the check reads both from the device: one host sync per step)."""


@dataclass
class StepResult:
    """What one optimizer step measured; values may be device tensors (read them in batches)."""

    loss: Any
    """Mean loss over the global batch (0-dim tensor or float)."""
    grad_norm: Any
    """Total gradient norm before clipping, over the whole model (0-dim tensor or float)."""
    stepped: bool
    """False when the optimizer step was skipped (fp16 overflow)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """The model's own metrics, means over the global batch."""


def finite(*values: Any) -> bool:
    """Whether every value (0-dim tensors or numbers) is finite (one host read per device)."""
    import math

    from deepseek.training.metrics import read_scalars

    return all(math.isfinite(v) for v in read_scalars(list(values)))


class MicroBatches(list):  # type: ignore[type-arg]
    """The micro-batches of one step (a list of batches) with each one's weight in the step's
    loss, when the model weighs its batches by items
    (:meth:`~deepseek.models.protocol.TrainableModel.loss_items`): ``weights[i] = items of
    micro-batch i x data-parallel ranks / items of the global batch``, so that the ranks' mean of
    their weighted sums is the global batch's loss per item. A plain list of micro-batches (or
    ``weights`` ``None``) weighs them by their rows. A strategy whose step is the base class's
    ``forward_backward`` honours it; one with a step of its own declares
    ``Strategy.weighs_items = False`` (or reads :attr:`weights` itself)."""

    def __init__(self, batches: Iterable[Any], weights: list[float] | None = None) -> None:
        super().__init__(batches)
        self.weights = weights
