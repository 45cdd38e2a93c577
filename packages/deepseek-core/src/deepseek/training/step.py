"""What one optimizer step of a :class:`~deepseek.training.strategy.Strategy` is told at set-up
(:class:`StepSettings`) and what it returns (:class:`StepResult`), and the optimizer factory a
strategy builds its optimizer with. :mod:`deepseek.training.strategy` re-exports them: import
them from there.
"""

from __future__ import annotations

import contextlib
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
    model_calls: Callable[[str], contextlib.AbstractContextManager[None]] = lambda call: contextlib.nullcontext()
    """The block running the model's ``call`` (``forward``, ``pipeline_loss``) in which what a
    plugin model's own code raises becomes its one-line :class:`~deepseek.errors.PluginError`
    (the engine's :meth:`~deepseek.training.engine.StepEngine.model_calls`, which the trainer
    also puts around the strategy's step and evaluation). A strategy that hands an error of the
    model to its other ranks (a pipeline evaluation) runs the model in it, so that every rank
    ends with the line that blames the model; default: nothing is blamed."""


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
    """The model's own metrics, means over the global batch (NaN: measured by no part of it,
    :class:`MetricSums`)."""


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


class MetricSums:
    """A step's model metrics, combined over its micro-batches and then the data-parallel ranks
    by their weights (rows, or :class:`MicroBatches` weights), as the loss is. A metric that is NaN
    for a micro-batch was not measured there (a class or modality none of its rows has): it
    weighs nothing, so the step's value is the weighted mean over the parts that measured it, and
    NaN (left out of the step record, :mod:`deepseek.training.step_records`) where none did. A
    metric a micro-batch did not return at all (a batch for which the model returns the loss
    alone, or a mapping without that name) was not measured there either."""

    MEASURED = "\0measured:"
    TOTAL = "\0total"

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.measured: dict[str, torch.Tensor] = {}
        self.weights: list[float] = []
        """Every micro-batch's weight, in order, whether it returned metrics or not."""

    def add(self, metrics: dict[str, torch.Tensor], weight: float) -> None:
        """One micro-batch's metrics (0-dim tensors) at ``weight``; at weight 0 they add exactly 0
        (:func:`~deepseek.training.evaluation.weighed`: an infinite value times 0 would be NaN)."""
        import torch

        from deepseek.training.evaluation import weighed

        self.weights.append(weight)
        for key, value in metrics.items():
            value = value.detach().float()
            seen = ~torch.isnan(value)
            part = weighed(torch.where(seen, value, torch.zeros_like(value)), weight)
            took = seen.float() * weight
            self.sums[key] = self.sums[key] + part if key in self.sums else part
            self.measured[key] = self.measured[key] + took if key in self.measured else took

    @property
    def total(self) -> torch.Tensor | None:
        """The weight of every micro-batch added, summed in fp32 in the order the measured weights
        are (so it equals a metric's measured weight bit for bit where every micro-batch measured
        it), on the metrics' device (the CPU while no micro-batch returned a metric: a rank whose
        rows returned none still weighs its share in the mean over the data-parallel ranks);
        ``None`` before any micro-batch was added."""
        import torch

        if not self.weights:
            return None
        total = torch.zeros_like(next(iter(self.sums.values()))) if self.sums else torch.zeros(())
        for weight in self.weights:
            total = total + weight
        return total

    def packed(self) -> dict[str, torch.Tensor]:
        """The sums and the measured weights as one mapping, for ``Strategy.reduce_mean``."""
        out = dict(self.sums)
        out.update({self.MEASURED + k: v for k, v in self.measured.items()})
        total = self.total
        if total is not None:
            out[self.TOTAL] = total
        return out

    @staticmethod
    def names(packed: dict[str, torch.Tensor]) -> list[str]:
        """The metric names of a :meth:`packed` mapping."""
        return [key for key in packed if not key.startswith("\0")]

    @classmethod
    def unpacked(cls, reduced: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The step's metrics from :meth:`packed` after the mean over ranks: each weighted sum
        scaled by the weight that measured it (exactly 1 when every part did; NaN when none did)."""
        total = reduced.get(cls.TOTAL)
        return {key: reduced[key] * (total / reduced[cls.MEASURED + key]) for key in cls.names(reduced)}
