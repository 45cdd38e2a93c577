"""The strategy interface: how one training job spreads over devices and processes.

The trainer talks only to this interface, so DDP, FSDP2, DeepSpeed and pipeline parallelism are
plugins with no special case in the trainer (Lightning's Strategy, torchtitan's
``parallelize_fn``). A strategy owns process set-up, model wrapping, the optimizer step of one
training step (:meth:`Strategy.train_step`), evaluation and checkpoint I/O.

Data contract (what makes losses comparable across strategies): every rank draws the same
*global* batch; the dataset hands this rank its data-parallel rows (``dataset.shard(batch,
strategy.dp_rank, strategy.dp_size)``); the trainer cuts them into ``train.grad_accum`` equal
micro-batches and calls :meth:`Strategy.train_step`. Batches are pytrees of CPU tensors (see
:mod:`deepseek.data.batch`); the strategy moves them to its device. The model is called as
``model(**batch)`` and returns its loss, or a mapping with ``"loss"`` and named metrics
(:mod:`deepseek.models.protocol`). The reported loss and metrics are means over the global batch.

One step, as :meth:`Strategy.train_step` composes it by default from parts a strategy overrides::

    loss, metrics = self.forward_backward(micro_batches)   # accumulation, written once here
    grad_norm = self.clip_grad_norm(self.settings.grad_clip)
    stepped = self.optimizer_step()
    self.zero_grad()

:meth:`forward_backward` in turn runs, per micro-batch, :meth:`accumulation` (DDP's ``no_sync``
on all but the last), :meth:`to_device`, the model under :meth:`autocast`, and
:meth:`backward`, then :meth:`reduce_mean` over the data-parallel ranks. An engine that clips
inside its own step (DeepSpeed) overrides :meth:`train_step`: ``settings.grad_clip`` is known at
:meth:`setup`. Mixed precision goes through :class:`~deepseek.training.mixed_precision.Precision`.

Lifecycle, called by the trainer (:class:`deepseek.training.engine.StepEngine`) in this order::

    strategy = cls(options, precision=precision, host=host)
    strategy.setup_environment()                         # process group, device
    strategy.place_for_training(model, optimizer_factory, settings)
        # keeps settings as self.settings, then setup(): wrap, shard, build the optimizer
    strategy.resolved_options()                          # what it chose for an "auto" option
    loop:
        strategy.any_rank(stop_requested)                # every step boundary (preemption.py)
        result = strategy.train_step(micro_batches)
    strategy.evaluate(batch)
    strategy.save_checkpoint(dir, trainer_state) / strategy.load_checkpoint(dir)
    strategy.teardown()

For ``deepseek eval`` / ``generate`` the lifecycle is ``setup_environment``,
:meth:`Strategy.setup_inference` (a trained model, no optimizer; called through
:meth:`Strategy.place_for_inference`, which keeps the settings first), the model's calls, ``teardown``.

Rules that need no process (checked when a config is loaded and again before ``deepseek launch``
starts any process) are the class methods :meth:`check_config` and :meth:`check_launch`; the model
capabilities a strategy needs are :meth:`required_capabilities`. What a step is told and what it
returns (:class:`StepSettings`, :class:`StepResult`) live in :mod:`deepseek.training.step` and are
imported from here.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, final

from deepseek.training.step import OptimizerFactory, StepResult, StepSettings, finite
from deepseek.training.strategy_rules import StrategyRules

__all__ = ["OptimizerFactory", "StepResult", "StepSettings", "Strategy"]

if TYPE_CHECKING:
    import torch
    from torch import nn

    from deepseek.data.batch import Batch
    from deepseek.training.mixed_precision import Precision


class Strategy(StrategyRules, ABC):
    """Base class of every parallelism strategy. Subclass it and register it via the
    ``deepseek_register_strategies`` hook.

    ``Options`` is a frozen dataclass describing the strategy's own keys of the ``[strategy]``
    config table; unknown keys and bad values are rejected with the field path. What a strategy
    declares and the rules it checks without a process (``name``, ``Options``, the class
    attributes, :meth:`check_config`, ...) come from
    :class:`~deepseek.training.strategy_rules.StrategyRules`.
    """

    def __init__(self, options: Mapping[str, Any] | Any = None, *, precision: Precision, host: Any = None) -> None:
        from deepseek.config.validate import build_dataclass

        if options is None or isinstance(options, Mapping):
            options = build_dataclass(self.Options, dict(options or {}), path="strategy")
        self.options = options
        self.precision = precision
        self.host = host
        """The plugin host of the run (``None``: the process's); e.g. for cluster checks."""
        self.settings = StepSettings()
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
        """Size of the data-parallel dimension (:meth:`data_parallel_size` says it before set-up)."""
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

    @final
    def place_for_training(self, model: nn.Module, optimizer_factory: OptimizerFactory,
                           settings: StepSettings) -> None:
        """What the trainer calls (after :meth:`setup_environment`): keep ``settings`` as
        ``self.settings`` (``grad_clip``, ``skip_nonfinite``, the model's name and
        ``model_calls``, read by the step and its parts), then :meth:`setup`. Not overridden: the
        settings are kept whatever an override of :meth:`setup` does with them."""
        self.settings = settings
        self.setup(model, optimizer_factory, settings)

    @abstractmethod
    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory, settings: StepSettings) -> None:
        """Move/wrap/shard ``model`` and build the optimizer; set ``self.model`` (what
        training calls) and ``self.optimizer``. ``settings`` are ``self.settings`` already
        (:meth:`place_for_training`, which calls this). ``model`` is built on CPU in fp32 with the
        run's seed (or on the device, see ``train.init_device``)."""

    def resolved_options(self) -> dict[str, Any]:
        """Options this strategy chose for the model at :meth:`setup` where the config left the
        choice to it (an ``"auto"``), by key with the value chosen. The run's ``config.toml``
        and its checkpoints record these values in place of what was asked, so a resume runs what
        ran. Default: none."""
        return {}

    @property
    def eval_module(self) -> nn.Module:
        """The module evaluation calls (default: the training module; DDP evaluates its inner
        module, which needs no gradient synchronisation)."""
        assert self.model is not None, "call setup() first"
        return self.model

    @abstractmethod
    def unwrapped_model(self) -> nn.Module:
        """The plain model (for sampling and export); may gather shards (a collective)."""

    # ------------------------------------------------------------------ the step and its parts

    def train_step(self, micro_batches: Sequence[Batch]) -> StepResult:
        """One optimizer step over this rank's micro-batches (see the module docstring). With
        ``settings.skip_nonfinite`` a non-finite loss or gradient norm skips the update (under
        fp16 the loss scaler already skips steps with non-finite gradients)."""
        loss, metrics = self.forward_backward(micro_batches)
        grad_norm = self.clip_grad_norm(self.settings.grad_clip)
        if self.settings.skip_nonfinite and self.precision.scaler is None and not finite(loss, grad_norm):
            self.discard_step()
            return StepResult(loss, grad_norm, False, metrics)
        stepped = self.optimizer_step()
        self.zero_grad()
        return StepResult(loss, grad_norm, stepped, metrics)

    def discard_step(self) -> None:
        """Drop this step's gradients without applying them (a skipped step)."""
        from deepseek.training import clip

        assert self.optimizer is not None
        clip.release(self.optimizer)
        self.zero_grad()

    def weights_finite(self) -> bool:
        """Whether every weight is finite, over the whole model (all ranks: a collective for
        sharded or split models). Checked before a checkpoint is written."""
        import torch

        assert self.model is not None
        flags = [torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all() for p in self.model.parameters()]
        return bool(torch.stack(flags).all()) if flags else True

    def forward_backward(self, micro_batches: Sequence[Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward and backward over the micro-batches, each loss weighted by its share of the
        rows (so the gradient is that of the mean loss), or by the weights of
        :class:`~deepseek.training.step.MicroBatches`; returns the detached mean loss and metrics
        over all data-parallel ranks (a metric NaN in a micro-batch counts as not measured there:
        :class:`~deepseek.training.step.MetricSums`)."""

        from deepseek.data.batch import batch_rows
        from deepseek.models.checks import loss_grad_problem, split_output
        from deepseek.plugins.calls import BrokenAnswer
        from deepseek.training.evaluation import weighed
        from deepseek.training.step import MetricSums, MicroBatches

        module = self.model
        assert module is not None, "call setup() first"
        module.train()
        total_rows = sum(batch_rows(b) for b in micro_batches)
        weights = micro_batches.weights if isinstance(micro_batches, MicroBatches) else None
        loss_sum: torch.Tensor | None = None
        sums = MetricSums()
        last = len(micro_batches) - 1
        for i, micro in enumerate(micro_batches):
            with self.accumulation(is_last=i == last):
                batch = self.to_device(micro)
                with self.autocast():
                    loss, metrics = split_output(module(**batch))
                problem = loss_grad_problem(loss, "forward")
                if problem is not None:  # in engine.step's model block: the model's broken answer
                    raise BrokenAnswer(problem)
                weight = weights[i] if weights is not None else batch_rows(micro) / total_rows
                self.backward(loss, weight)
            # A micro-batch that weighs 0 (no item its loss counts, loss_items 0) still runs on
            # every rank (fsdp and deepspeed gather weights for each forward), but its loss, a mean
            # over nothing (NaN), adds exactly 0 (weighed, as in an evaluation); its NaN metrics
            # count as not measured (MetricSums).
            part = weighed(loss.detach().float(), weight)
            loss_sum = part if loss_sum is None else loss_sum + part
            sums.add(metrics, weight)
        assert loss_sum is not None, "train_step needs at least one micro-batch"
        loss, reduced = self.reduce_mean(loss_sum, sums.packed())
        return loss, MetricSums.unpacked(reduced)

    @contextlib.contextmanager
    def accumulation(self, *, is_last: bool) -> Iterator[None]:
        """Context of one micro-batch's forward and backward: gradient synchronisation belongs
        to the last one (DDP's ``no_sync`` around the others). Default: nothing."""
        yield

    def to_device(self, batch: Batch) -> Batch:
        """``batch`` on this rank's device."""
        from deepseek.data.batch import move_to

        return move_to(batch, self.device)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward's mixed-precision context (default: the run's :class:`Precision`)."""
        return self.precision.autocast()

    def backward(self, loss: torch.Tensor, weight: float) -> None:
        """Backward of ``loss * weight`` (the micro-batch's share of the step's rows)."""
        self.precision.backward(loss * weight)

    def reduce_mean(
        self, loss: torch.Tensor, metrics: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean of this rank's loss and metrics over the data-parallel ranks (default: one rank).
        ``metrics`` is a :meth:`MetricSums.packed <deepseek.training.step.MetricSums.packed>`
        mapping, whose names may differ between ranks (a metric only some ranks' rows returned):
        a name this rank lacks adds 0 to the mean, not measured here."""
        return loss, metrics

    def reduce_sum(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each tensor summed over the data-parallel ranks (an evaluation's whole-set totals,
        :mod:`deepseek.training.totals`): called on every rank or on none, with the same names and
        shapes on every rank (:func:`~deepseek.training.totals.agreed_sums` checks them first).
        Default: one rank."""
        return tensors

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor | float:
        """Clip gradients to ``max_norm`` (skip when ``max_norm <= 0``); return the total norm
        before clipping over the whole model (all shards), preferably as a 0-dim device tensor:
        the trainer reads it together with the loss, so a step syncs with the host once.

        Default: unscale fp16 gradients, then :func:`deepseek.training.clip.clip_gradients` over
        the local parameters (which are whole: right for one device and for DDP, whose
        gradients are all-reduced before this)."""
        from deepseek.training import clip

        assert self.model is not None and self.optimizer is not None
        self.precision.unscale_(self.optimizer)
        fused_ok = self.precision.scaler is None
        return clip.clip_gradients(self.model.parameters(), max_norm, optimizer=self.optimizer if fused_ok else None)

    def optimizer_step(self) -> bool:
        """Apply the optimizer. Return False if the step was skipped (fp16 overflow)."""
        assert self.optimizer is not None
        return self.precision.step(self.optimizer)

    def zero_grad(self) -> None:
        """Reset gradients for the next step."""
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)

    def set_lr(self, lr: float) -> None:
        """Set every parameter group's learning rate to ``lr`` times the group's ``lr_scale``
        (``[[optimizer.groups]]``; 1 where a group has none). The trainer owns the schedule."""
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step_metrics(self) -> dict[str, float]:
        """Extra metrics of the last step (e.g. ``comm_bytes``); logged with the step."""
        return {}

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, batch: Batch, weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean loss and metrics of this rank's shard of a validation batch, without gradients,
        in eval mode (:func:`deepseek.training.evaluation.evaluate_batch`), times ``weight`` (the
        shard's items x ranks / the batch's items, for a model weighing by items, or its rows x
        ranks / the batch's rows for a batch whose rows the ranks split unevenly), averaged over
        the data-parallel ranks, as one part of a step is (:class:`~deepseek.training.step.MetricSums`:
        a metric NaN on a rank's shard, or not returned for it, was not measured there)."""
        from deepseek.training.evaluation import evaluate_batch, weighed
        from deepseek.training.step import MetricSums

        loss, metrics = evaluate_batch(self.eval_module, batch, device=self.device, autocast=self.autocast())
        sums = MetricSums()
        sums.add(metrics, weight)
        loss, reduced = self.reduce_mean(weighed(loss, weight), sums.packed())
        return loss, MetricSums.unpacked(reduced)

    @final
    def place_for_inference(self, model: nn.Module, settings: StepSettings) -> nn.Module:
        """What ``deepseek eval`` / ``generate --strategy NAME`` call (after
        :meth:`setup_environment`): keep ``settings`` as ``self.settings`` (the model's name, and
        ``model_calls`` blaming a plugin model's bugs, read by the commands and by a strategy that
        runs the model's code itself), then :meth:`setup_inference`. Not overridden: the settings
        are kept whatever an override of :meth:`setup_inference` does with them."""
        self.settings = settings
        return self.setup_inference(model, settings)

    def setup_inference(self, model: nn.Module, settings: StepSettings) -> nn.Module:
        """Place a trained model (plain, weights loaded, on the CPU) for evaluation and sampling
        on this process; return the module to call, in eval mode. ``settings`` are
        ``self.settings`` already (:meth:`place_for_inference`, which calls this). Every rank
        passes the same model and then makes the same calls. Default: the whole model on
        :attr:`device` (each rank computes everything); ``tp`` splits it over the ranks."""
        return model.to(self.device).eval()

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

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` from rank ``src`` on every rank."""
        return obj

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank. The trainer calls it at every
        step boundary (stop requests), so it must be cheap and never wait for the device: a
        host-side all-reduce of one number. One process: ``flag`` itself."""
        return flag

    def teardown(self) -> None:
        """Release process groups and other resources."""

    def engine_held(self, call: str) -> None:
        """Refuse ``call`` (e.g. ``"trainer.save_checkpoint()"``) in one line (:class:`~deepseek.errors.UsageError`)
        when :meth:`teardown` released what it needs: the trainer asks before its own public calls that reach the
        model or the collectives. Default: nothing to refuse (one process keeps its model after teardown);
        deepseek-pro's ``DistributedStrategy`` refuses after it released its engine and group."""

