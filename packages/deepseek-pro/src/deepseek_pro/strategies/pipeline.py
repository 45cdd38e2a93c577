"""``pipeline``: one pipeline stage per rank, on torch.distributed.pipelining.

The model is cut with its own ``split_stages(n)`` (stage 0 takes token ids, the last stage returns
logits); each rank keeps its stage, its optimizer and its part of every checkpoint. A step runs
the GPipe or 1F1B schedule over ``n`` pipeline micro-batches:

    n = strategy.microbatches, or (when 0, the default) max(train.grad_accum, number of stages)

The step's rows (all of the trainer's grad-accum micro-batches) are concatenated and cut into
``n`` equal chunks, so the gradient is that of the mean loss over the batch, as under ``single``.
The loss is the model's cross-entropy, computed on the last stage and summed to every rank.

Tied embeddings: ``split_stages`` gives the last stage its own copy of ``wte.weight`` as
``lm_head.weight``; their gradients are summed between the first and the last stage before
clipping (Megatron's embedding group), so both copies receive the tied weight's true gradient and
stay bit-identical under the same optimizer. The clipping norm counts the copy once.

Checkpoints are canonical (see :mod:`deepseek_pro.strategies.pipeline_state`): each stage writes
its part under the full model's names and rank 0 merges the parts into the files ``single``
writes, so a checkpoint moves freely between ``single``, ``pipeline`` and ``hybrid``. :class:`~deepseek_pro.strategies.hybrid.HybridStrategy` reuses all
of this with each stage sharded over a data-parallel group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from deepseek.config.validate import non_negative
from deepseek.errors import ConfigError, UsageError
from deepseek.training import checkpoint as ckpt
from deepseek.training.strategy import Batch, OptimizerFactory
from deepseek_pro.strategies import pipeline_state as pstate
from deepseek_pro.strategies.base import DistributedOptions, DistributedStrategy

if TYPE_CHECKING:
    from deepseek.config.schema import Config



@dataclass(frozen=True)
class PipelineOptions(DistributedOptions):
    """``[strategy]`` keys of ``pipeline``."""

    schedule: Literal["gpipe", "1f1b"] = "1f1b"
    """``gpipe``: all forwards, then all backwards; ``1f1b``: interleaved (less activation memory)."""
    microbatches: int = field(default=0, metadata={"check": non_negative})
    """Pipeline micro-batches per step; 0: max(train.grad_accum, number of stages)."""


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The GPT's training loss: mean token cross-entropy, computed in fp32."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def pipeline_microbatches(options: Any, grad_accum: int, stages: int) -> int:
    """How many pipeline micro-batches one optimizer step runs (see the module docstring)."""
    return int(options.microbatches) or max(grad_accum, stages)


def check_pipeline_fit(config: Config, stages: int, dp: int, n_layers: int) -> None:
    """ConfigError when ``config`` cannot run as ``stages`` pipeline stages x ``dp`` replicas."""
    if stages > n_layers:
        raise ConfigError(
            f"strategy.name: {config.strategy.name!r} needs one transformer block per stage, but the "
            f"model has {n_layers} layers for {stages} stages; use at most {n_layers} stages or "
            f"raise model.n_layers"
        )
    rows = config.data.batch_size // max(dp, 1)
    n = pipeline_microbatches(config.strategy.options, config.train.grad_accum, stages)
    if config.data.batch_size % max(dp, 1) or rows % n:
        raise ConfigError(
            f"strategy.microbatches: {rows} rows per pipeline do not split into {n} micro-batches; "
            f"make data.batch_size a multiple of {n * max(dp, 1)} or set strategy.microbatches"
        )
    if config.strategy.options.schedule == "1f1b" and n < stages:
        raise ConfigError(
            f"strategy.microbatches: the 1f1b schedule needs at least one micro-batch per stage "
            f"({stages}), got {n}; raise strategy.microbatches or use schedule = 'gpipe'"
        )


class PipelineStrategy(DistributedStrategy):
    """GPipe / 1F1B pipeline parallelism, one stage per rank (``pp = world size``)."""

    name: ClassVar[str] = "pipeline"
    Options: ClassVar[type] = PipelineOptions
    needs_launcher: ClassVar[bool] = True

    def __init__(self, options: Any = None, *, precision: Any) -> None:
        super().__init__(options, precision=precision)
        self.pp_size, self.pp_rank = 1, 0
        self._dp_size, self._dp_rank = 1, 0
        self.pp_group: Any = None
        self._tied_group: Any = None
        self._stage_mod: nn.Module | None = None
        self._pipe_stage: Any = None
        self._schedules: dict[int, Any] = {}
        self._raw_losses: list[torch.Tensor] = []
        self._tied_copy: nn.Parameter | None = None
        self._tied_source: nn.Parameter | None = None
        self._model_cls: type | None = None
        self._model_config: Any = None

    # ------------------------------------------------------------------ topology

    @property
    def dp_rank(self) -> int:
        return self._dp_rank

    @property
    def dp_size(self) -> int:
        return self._dp_size

    @property
    def is_first(self) -> bool:
        """This rank runs the first stage (embeddings)."""
        return self.pp_rank == 0

    @property
    def is_last(self) -> bool:
        """This rank runs the last stage (head and loss)."""
        return self.pp_rank == self.pp_size - 1

    def pp_peer(self, pp_index: int) -> int:
        """Global rank of stage ``pp_index`` in this rank's pipeline."""
        return pp_index * self._dp_size + self._dp_rank

    @classmethod
    def check_launch(cls, config: Config, world_size: int, n_layers: int) -> None:
        """Reject before launch what cannot fit ``world_size`` ranks (called by the launcher)."""
        check_pipeline_fit(config, world_size, 1, n_layers)

    def setup_environment(self) -> None:
        super().setup_environment()
        self._build_topology()
        self._build_tied_groups()

    def _build_topology(self) -> None:
        """Pipeline only: every rank is one stage of the one pipeline."""
        self.pp_size, self.pp_rank = self.world_size, self.rank
        self.pp_group = dist.group.WORLD

    def _build_tied_groups(self) -> None:
        """One {first, last} group per pipeline for the tied embedding (every rank creates all)."""
        self._tied_group = None
        if self.pp_size < 2:
            return
        for d in range(self._dp_size):
            ranks = [d, (self.pp_size - 1) * self._dp_size + d]
            group = dist.new_group(ranks) if self.pp_size > 2 or self._dp_size > 1 else dist.group.WORLD
            if self.rank in ranks:
                self._tied_group = group

    # ------------------------------------------------------------------ set-up

    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory) -> None:
        from torch.distributed.pipelining import PipelineStage

        from deepseek.models.stages import tied_parameters

        splitter = getattr(model, "split_stages", None)
        if splitter is None:
            raise ConfigError(
                f"strategy.name: {self.name!r} needs a model with split_stages(n); "
                f"{type(model).__name__} has none, use another strategy"
            )
        # Keep only what rebuilds a full model: other stages' weights are freed with ``model``.
        self._model_cls, self._model_config = type(model), getattr(model, "config", None)
        stages = splitter(self.pp_size)
        tied = tied_parameters(stages) if self.pp_size > 1 else None
        stage = self.shard_stage(stages[self.pp_rank].to(self.device))
        if tied is not None:  # looked up after sharding, which replaces the parameters
            self._tied_source = stage.wte.weight if self.is_first else None
            self._tied_copy = stage.lm_head.weight if self.is_last else None
        self._stage_mod = stage
        self.model = self._stage_mod
        self.optimizer = optimizer_factory(self._stage_mod.parameters())
        self._pipe_stage = PipelineStage(
            self._stage_mod, self.pp_rank, self.pp_size, self.device, group=self.pp_group
        )
        self._use_distributed_scaler()

    def shard_stage(self, stage: nn.Module) -> nn.Module:
        """Wrap this rank's stage (hybrid shards it); the pipeline keeps it as it is."""
        return stage

    def _use_distributed_scaler(self) -> None:
        """fp16: every rank must agree on skipping a step, so the inf check is all-reduced."""
        if self.precision.scaler is None:
            return
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        self.precision.use_scaler(ShardedGradScaler(
            self.device.type,
            init_scale=self.precision.init_scale,
            growth_interval=self.precision.growth_interval,
            process_group=dist.group.WORLD,
        ))

    def _schedule(self, n: int) -> Any:
        from torch.distributed.pipelining import Schedule1F1B, ScheduleGPipe

        if n not in self._schedules:
            cls = Schedule1F1B if self.options.schedule == "1f1b" else ScheduleGPipe
            if cls is Schedule1F1B and n < self.pp_size:
                raise UsageError(
                    f"strategy.microbatches: the 1f1b schedule needs at least {self.pp_size} "
                    f"micro-batches (one per stage), got {n}; raise strategy.microbatches"
                )
            self._schedules[n] = cls(self._pipe_stage, n, loss_fn=self._loss_fn)
        return self._schedules[n]

    def _loss_fn(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = cross_entropy(logits, targets)
        self._raw_losses.append(loss.detach().float())
        return self.precision.scale(loss)

    # ------------------------------------------------------------------ the step

    def forward_backward(self, micro_batches: Sequence[Batch]) -> torch.Tensor:
        assert self._stage_mod is not None, "call setup() first"
        self._stage_mod.train()
        x = torch.cat([mb[0] for mb in micro_batches]).to(self.device)
        y = torch.cat([mb[1] for mb in micro_batches]).to(self.device)
        n = pipeline_microbatches(self.options, len(micro_batches), self.pp_size)
        if x.size(0) % n:
            raise UsageError(
                f"strategy.microbatches: {x.size(0)} rows per step do not split into {n} pipeline "
                f"micro-batches; make data.batch_size a multiple of {n * self._dp_size}"
            )
        schedule = self._schedule(n)
        self._raw_losses = []
        if self.precision.scaler is not None:
            # Only the last stage scales a loss; the others' scalers must be initialised too.
            self.precision.scale(torch.zeros((), device=self.device))
        args = (x,) if self.is_first else ()
        kwargs: dict[str, Any] = {"target": y, "losses": []} if self.is_last else {}
        with self.precision.autocast():
            schedule.step(*args, return_outputs=False, **kwargs)
        self._sync_tied_grads()
        local = torch.stack(self._raw_losses).mean() if self.is_last else torch.zeros(())
        return self._sum_from_last(local)

    def _sum_from_last(self, local: torch.Tensor) -> torch.Tensor:
        """Every rank gets the mean over data-parallel ranks of the last stages' ``local``."""
        t = local.detach().float().reshape(1).to(self.comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return (t / self._dp_size).reshape(()).cpu()

    def _sync_tied_grads(self) -> None:
        param = self._tied_source if self.is_first else self._tied_copy
        if self._tied_group is None or param is None or param.grad is None:
            return
        grad = param.grad
        local = grad.to_local() if hasattr(grad, "to_local") else grad
        dist.all_reduce(local, op=dist.ReduceOp.SUM, group=self._tied_group)

    def clip_grad_norm(self, max_norm: float) -> float:
        assert self._stage_mod is not None and self.optimizer is not None
        self.precision.unscale_(self.optimizer)
        grads = [p.grad for p in self._stage_mod.parameters() if p.grad is not None]
        counted = [p.grad for p in self._stage_mod.parameters() if p.grad is not None and p is not self._tied_copy]
        sq = torch.zeros(1, dtype=torch.float32, device=self.device)
        for g in counted:
            local = g.to_local() if hasattr(g, "to_local") else g
            sq += local.detach().float().pow(2).sum()
        sq = sq.to(self.comm_device)
        dist.all_reduce(sq, op=dist.ReduceOp.SUM)
        total = float(sq.sqrt().item())
        if max_norm > 0:
            coef = min(max_norm / (total + 1e-6), 1.0)
            if coef < 1.0:
                for g in grads:
                    (g.to_local() if hasattr(g, "to_local") else g).mul_(coef)
        return total

    @torch.no_grad()
    def evaluate_loss(self, batch: Batch) -> torch.Tensor:
        """A plain forward through the stages with point-to-point sends (any batch shape)."""
        assert self._stage_mod is not None
        stage = self._stage_mod
        was_training = stage.training
        stage.eval()
        try:
            x, y = batch[0].to(self.device), batch[1].to(self.device)
            d_model = self._model_config.d_model
            if self.is_first:
                h = x
            else:
                h = torch.empty(x.size(0), x.size(1), d_model, device=self.device)
                dist.recv(h, src=self.pp_peer(self.pp_rank - 1))
            with self.precision.autocast():
                out = stage(h)
            if not self.is_last:
                dist.send(out.float().contiguous(), dst=self.pp_peer(self.pp_rank + 1))
                local = torch.zeros(())
            else:
                local = cross_entropy(out, y)
            return self._sum_from_last(local)
        finally:
            stage.train(was_training)

    # ------------------------------------------------------------------ state

    def stage_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """This stage's full (unsharded) model and optimizer state under canonical names."""
        assert self._stage_mod is not None and self.optimizer is not None
        return pstate.stage_state(self._stage_mod, self.optimizer, tied_copy=self._tied_copy is not None)

    def _writes_part(self) -> bool:
        return self._dp_rank == 0

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        directory = Path(directory)
        model_sd, optim_sd = self.stage_state()
        if self._writes_part():
            ckpt.save_model_state(pstate.part_path(directory, self.pp_rank, ckpt.MODEL_FILE), model_sd)
            ckpt.save_optimizer_state(pstate.part_path(directory, self.pp_rank, ckpt.OPTIMIZER_FILE), optim_sd)
        self.barrier()
        if self.is_global_zero:
            pstate.merge_parts(directory, self.pp_size)
            ckpt.write_trainer_state(directory, trainer_state)
        self.barrier()

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        assert self._stage_mod is not None and self.optimizer is not None
        state = ckpt.read_trainer_state(Path(directory))
        pstate.load_stage(self._stage_mod, self.optimizer, Path(directory), tied_copy=self._tied_copy is not None)
        return state

    def unwrapped_model(self) -> nn.Module:
        """A full, plain copy of the model with every stage's current weights (on every rank)."""
        assert self._model_cls is not None
        model_sd, _ = self.stage_state()
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, model_sd if self._writes_part() else {})
        merged: dict[str, torch.Tensor] = {}
        for part in parts:
            merged.update(part)
        return pstate.rebuild_model(self._model_cls, self._model_config, merged)
