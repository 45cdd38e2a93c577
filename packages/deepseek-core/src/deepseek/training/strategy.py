"""The strategy interface: how one training job spreads over devices and processes.

The trainer talks only to this interface, so DDP, FSDP2, DeepSpeed and pipeline parallelism are
plugins with no special case in the trainer. Inspired by Lightning's Strategy/Fabric and
torchtitan's ``parallelize_model``: the strategy owns process set-up, model wrapping, the
forward/backward of one optimizer step (so a pipeline schedule can run its micro-batches its own
way), the optimizer step, and checkpoint I/O (so a sharded strategy writes shards).

Data contract (what makes losses comparable across strategies): the trainer draws the same
*global* batch on every rank and hands each rank ``global_batch[dp_rank::dp_size]`` rows via
:meth:`Strategy.shard_batch`; the trainer splits that shard into ``grad_accum`` equal
micro-batches and hands them to :meth:`Strategy.forward_backward` (a pipeline strategy may
schedule them as its own micro-batches).
The reported loss is the mean over the global batch. Batches reach the strategy as CPU tensors;
the strategy moves them to its device. Mixed precision goes through
:class:`~deepseek.training.precision.Precision` (``autocast()``, ``backward()``, ``unscale_()``
before clipping, ``step()`` which returns False when fp16 skipped the step); canonical checkpoint
I/O through :mod:`deepseek.training.checkpoint` (``save_model_state``, ``save_optimizer_state``,
``write_trainer_state`` and their ``load_*`` / ``read_*`` counterparts, with full state dicts).

Lifecycle, called by the trainer in this order::

    strategy = create_strategy(name, options, precision=precision)
    strategy.setup_environment()              # process group, device
    precision.bind(strategy.device)           # by the trainer, unless the strategy already did
    strategy.setup(model, optimizer_factory)  # wrap, shard, build optimizer
    loop:
        loss = strategy.forward_backward(micro_batches)
        grad_norm = strategy.clip_grad_norm(max_norm)
        stepped = strategy.optimizer_step()   # False if fp16 overflow skipped the step
        strategy.zero_grad()
    strategy.save_checkpoint(dir, trainer_state) / strategy.load_checkpoint(dir)
    strategy.teardown()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from torch import nn

    from deepseek.training.precision import Precision

OptimizerFactory = Callable[[Iterable[Any]], "torch.optim.Optimizer"]
"""Builds the optimizer from parameters or parameter groups (decay / no-decay)."""

Batch = tuple["torch.Tensor", "torch.Tensor"]
"""(inputs, targets), both ``(batch, seq)`` int64 token ids."""


@dataclass(frozen=True)
class NoOptions:
    """Options of a strategy that takes none."""


class Strategy(ABC):
    """Base class of every parallelism strategy. Subclass it and register it via the
    ``deepseek_register_strategies`` hook.

    ``Options`` is a frozen dataclass describing the strategy's own keys of the ``[strategy]``
    config table; unknown keys and bad values are rejected with the field path.
    """

    name: ClassVar[str] = "?"
    Options: ClassVar[type] = NoOptions
    supports_compression: ClassVar[tuple[str, ...]] = ()
    """Gradient compression methods this strategy can apply (e.g. ``("bf16", "powersgd")``)."""
    needs_launcher: ClassVar[bool] = False
    """True when the strategy needs one process per device started by a launcher
    (``deepseek launch`` / torchrun); False when it trains inside the calling process."""

    def __init__(self, options: Mapping[str, Any] | Any = None, *, precision: Precision) -> None:
        from deepseek.config.validate import build_dataclass

        if options is None or isinstance(options, Mapping):
            options = build_dataclass(self.Options, dict(options or {}), path="strategy")
        self.options = options
        self.precision = precision
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------ topology

    @property
    def rank(self) -> int:
        """Global rank of this process (0 for single-process strategies)."""
        return 0

    @property
    def world_size(self) -> int:
        """Number of processes in the job."""
        return 1

    @property
    def dp_rank(self) -> int:
        """Rank within the data-parallel dimension (which rows of the global batch to take)."""
        return self.rank

    @property
    def dp_size(self) -> int:
        """Size of the data-parallel dimension."""
        return self.world_size

    @property
    def is_global_zero(self) -> bool:
        """True on the one process that writes logs, plots and metadata."""
        return self.rank == 0

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """The device this process computes on."""

    def setup_environment(self) -> None:
        """Create process groups and pick the device. Called once, before :meth:`setup`."""

    # ------------------------------------------------------------------ model and optimizer

    @abstractmethod
    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory) -> None:
        """Move/wrap/shard ``model`` and build the optimizer; set ``self.model`` and
        ``self.optimizer``. ``model`` is built on CPU in fp32 with the run's seed."""

    def shard_batch(self, global_batch: Batch) -> Batch:
        """This data-parallel rank's rows of the global batch."""
        x, y = global_batch
        if self.dp_size == 1:
            return x, y
        return x[self.dp_rank :: self.dp_size], y[self.dp_rank :: self.dp_size]

    @abstractmethod
    def forward_backward(self, micro_batches: Sequence[Batch]) -> torch.Tensor:
        """Forward and backward over one optimizer step's micro-batches (gradient accumulation).

        Returns the detached mean loss over the *global* batch (reduced across data-parallel
        ranks), as a 0-dim float tensor on CPU or the device.
        """

    @abstractmethod
    def clip_grad_norm(self, max_norm: float) -> torch.Tensor | float:
        """Clip gradients to ``max_norm`` (skip when ``max_norm <= 0``); return the total norm
        before clipping, over the whole model (all shards), preferably as a 0-dim device tensor:
        the trainer reads it together with the loss, so a step syncs with the host once.
        :func:`deepseek.training.clip.clip_gradients` does this for plain tensors."""

    def optimizer_step(self) -> bool:
        """Apply the optimizer. Return False if the step was skipped (fp16 overflow)."""
        assert self.optimizer is not None
        return self.precision.step(self.optimizer)

    def zero_grad(self) -> None:
        """Reset gradients for the next step."""
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter group (the trainer owns the schedule)."""
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @abstractmethod
    def evaluate_loss(self, batch: Batch) -> torch.Tensor:
        """Mean loss on ``batch`` (this rank's shard), no gradients, reduced across ranks."""

    @abstractmethod
    def unwrapped_model(self) -> nn.Module:
        """The plain model (for sampling and export); may gather shards on rank 0."""

    # ------------------------------------------------------------------ checkpoints

    @abstractmethod
    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        """Write model, optimizer and ``trainer_state`` under ``directory`` (which the trainer
        creates as a temp dir and renames into place once every rank returns)."""

    @abstractmethod
    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        """Restore model and optimizer from ``directory``; return the saved ``trainer_state``.
        Must accept checkpoints written by any strategy (the canonical format)."""

    # ------------------------------------------------------------------ collectives

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""

    def all_reduce_mean(self, value: float) -> float:
        """Mean of ``value`` over ranks."""
        return value

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` from rank ``src`` on every rank."""
        return obj

    def step_metrics(self) -> dict[str, float]:
        """Extra metrics for the last step (e.g. ``comm_bytes``); logged with the step."""
        return {}

    def teardown(self) -> None:
        """Release process groups and other resources."""
