"""``pipeline``: one pipeline stage per rank, on torch.distributed.pipelining.

The model must offer the ``pipeline`` capability (:mod:`deepseek.models.protocol`): it is cut
with its own ``split_stages(n)``; each rank keeps its stage, its optimizer and its part of every
checkpoint. A step runs the GPipe or 1F1B schedule over ``n`` pipeline micro-batches:

    n = strategy.microbatches, or (when 0, the default) max(train.grad_accum, number of stages)

The step's rows (all of the trainer's grad-accum micro-batches) are joined, turned into stage-0
arguments and a target by the model's ``pipeline_batch``, and cut into ``n`` equal chunks, so the
gradient is that of the mean loss over the batch, as under ``single``. The loss is the model's
``pipeline_loss``, computed on the last stage and summed to every rank. ``pipeline_loss`` is
called on a weightless (meta-device) copy of the model: it must not read parameters. Its result
must meet ``single``'s rules for a loss, refused on every rank in ``single``'s line
(:mod:`deepseek_pro.strategies.pipeline_loss`).

Tied weights: the model's ``tied_parameters(stages)`` names weights held by two stages (the GPT's
``wte.weight`` on the first stage and its copy ``lm_head.weight`` on the last); their gradients are
summed between the two stages before clipping (Megatron's embedding group), so both copies receive
the tied weight's true gradient and stay bit-identical under the same optimizer; the clipping norm
counts each copy once.

Checkpoints are canonical (see :mod:`deepseek_pro.strategies.pipeline_state`): each stage writes
its part under the full model's names and rank 0 merges the parts into the files ``single`` writes,
so a checkpoint moves freely between ``single``, ``pipeline`` and ``hybrid``.
:class:`~deepseek_pro.strategies.hybrid.HybridStrategy` reuses all of this with each stage sharded
over a data-parallel group. The ``[strategy]`` keys and the rules checked before any process starts
are in :mod:`deepseek_pro.strategies.pipeline_rules`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.distributed as dist
from torch import nn

from deepseek.data.batch import concat_rows, move_to
from deepseek.errors import CheckpointError, UsageError
from deepseek.training import checkpoint as ckpt
from deepseek.training import clip
from deepseek.training.evaluation import weighed
from deepseek.training.step import MetricSums
from deepseek.training.strategy import OptimizerFactory, StepSettings
from deepseek_pro.strategies import pipeline_stage as stage_parts
from deepseek_pro.strategies import pipeline_state as pstate
from deepseek_pro.strategies.base import DistributedStrategy
from deepseek_pro.strategies.pipeline_eval import evaluate_stage
from deepseek_pro.strategies.pipeline_loss import LossCheck, chunk_weights, step_loss
from deepseek_pro.strategies.pipeline_metrics import StageMetrics
from deepseek_pro.strategies.pipeline_rules import (
    PipelineOptions,
    check_pipeline_fit,
    model_blocks,
    pipeline_microbatches,
)
from deepseek_pro.strategies.twin import meta_twin

if TYPE_CHECKING:
    from deepseek.config.schema import Config


class PipelineStrategy(DistributedStrategy):
    """GPipe / 1F1B pipeline parallelism, one stage per rank (``pp = world size``)."""

    name: ClassVar[str] = "pipeline"
    Options: ClassVar[type] = PipelineOptions
    needs_launcher: ClassVar[bool] = True

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        super().__init__(options, precision=precision, host=host)
        self.pp_size, self.pp_rank, self._dp_size, self._dp_rank = 1, 0, 1, 0
        self.tp_size, self.tp_rank = 1, 0
        """Tensor-parallel ranks per stage replica (``hybrid`` with ``tp_size``); rank =
        (pp_index * dp + dp_index) * tp + tp_index."""
        self.fused: Any = None
        """The stage's fused rows kept rank-major under tensor parallelism (a ``FusedRows``)."""
        self.pp_group: Any = None
        self._stage_mod: nn.Module | None = None
        self._pipe_stage: Any = None
        self._schedules: dict[int, Any] = {}
        self._raw_losses: list[torch.Tensor] = []
        self._raw_metrics: list[dict[str, torch.Tensor]] = []
        self._weights: list[float] | None = None
        """The step's pipeline micro-batches' weights by items (:func:`.pipeline_loss.chunk_weights`)."""
        self._metrics: StageMetrics | None = None
        self._template: nn.Module | None = None
        self._loss_check: LossCheck | None = None
        """The single-device rules on this run's training losses (:mod:`.pipeline_loss`)."""
        self._tied: dict[str, str] = {}
        """This model's tied weights as {copy name: source name} (names within their stages)."""
        self._tied_sync: list[tuple[str, Any]] = []
        """(name of a tied weight in this stage, the process group of its two stages)."""

    # ------------------------------------------------------------------ rules

    @classmethod
    def required_capabilities(cls, config: Config) -> dict[str, str]:
        return {"pipeline": f"strategy {config.strategy.name!r}"}

    @classmethod
    def check_launch(cls, config: Config, world_size: int, model: nn.Module) -> None:
        """Reject before launch what cannot fit ``world_size`` ranks (called by the launcher)."""
        check_pipeline_fit(config, world_size, 1, model_blocks(model))

    @classmethod
    def data_parallel_size(cls, config: Config, world_size: int) -> int:
        """Every stage sees the whole batch."""
        return 1

    # ------------------------------------------------------------------ topology

    @property
    def dp_rank(self) -> int:
        return self._dp_rank

    @property
    def dp_size(self) -> int:
        return self._dp_size

    @property
    def is_first(self) -> bool:
        """This rank runs the first stage."""
        return self.pp_rank == 0

    @property
    def is_last(self) -> bool:
        """This rank runs the last stage (and the loss)."""
        return self.pp_rank == self.pp_size - 1

    def pp_peer(self, pp_index: int) -> int:
        """Global rank of stage ``pp_index`` in this rank's pipeline."""
        return (pp_index * self._dp_size + self._dp_rank) * self.tp_size + self.tp_rank

    def setup_environment(self) -> None:
        super().setup_environment()
        self._build_topology()

    def _build_topology(self) -> None:
        """Pipeline only: every rank is one stage of the one pipeline."""
        self.pp_size, self.pp_rank = self.world_size, self.rank
        self.pp_group = dist.group.WORLD

    # ------------------------------------------------------------------ set-up

    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory, settings: StepSettings) -> None:
        self._template = meta_twin(model)  # weightless (the loss, export); others' weights go with model
        self._loss_check = LossCheck(settings.model_calls)
        self._metrics = StageMetrics(settings.model_calls)
        stages = stage_parts.checked_stages(model, self.pp_size, settings, self.name)  # the model's bug: its line
        with settings.model_calls("tied_parameters"):
            pairs = model.tied_parameters(stages) if self.pp_size > 1 else []  # type: ignore[operator]
        tied_groups = self._tied_groups(stages, pairs)
        stage = self.shard_stage(stages[self.pp_rank].to(self.device))
        self._tied_sync = [(name, group) for (i, name), group in tied_groups.items() if i == self.pp_rank]
        self._stage_mod = self.model = stage
        # a tied copy (the last stage's lm_head) trains in its source's group
        self.optimizer = optimizer_factory([(self._tied.get(n, n), p) for n, p in self._stage_mod.named_parameters()])
        self._pipe_stage = stage_parts.neutral_stage_class()(self._stage_mod, self.pp_rank, self.pp_size, self.device,
                                                             group=self.pp_group)
        self._use_distributed_scaler()

    def setup_inference(self, model: nn.Module, settings: StepSettings) -> nn.Module:
        """This rank's stage of the trained model, served as one model on every rank
        (:class:`~deepseek_pro.strategies.pipeline_decode.PipelinedModel`: ``eval`` and
        KV-cache ``generate`` through the stages); the stage's code runs in ``settings.model_calls``
        (``self.settings``), as in training (:meth:`evaluate`)."""
        from deepseek_pro.strategies.pipeline_decode import place_stage

        self._template = meta_twin(model)
        placed = place_stage(self, model)
        self._stage_mod = placed.stage
        return placed

    def release_engine(self) -> None:  # the stage, its PipelineStage and schedules, the tied weights' groups
        super().release_engine()
        self._stage_mod, self._pipe_stage, self._schedules, self._tied_sync = None, None, {}, []

    def _tied_groups(self, stages: list[nn.Module], pairs: list[tuple[Any, Any]]) -> dict[tuple[int, str], Any]:
        """For every tied pair, its names in its two stages and one process group per pipeline
        joining those stages (every rank creates every group, in the same order)."""
        out: dict[tuple[int, str], Any] = {}
        self._tied = {}
        for source, copy in pairs:
            (i, src_name), (j, copy_name) = stage_parts.locate_param(stages, source), stage_parts.locate_param(stages, copy)
            self._tied[copy_name] = src_name
            for d in range(self._dp_size):
                for t in range(self.tp_size):
                    ranks = sorted({(k * self._dp_size + d) * self.tp_size + t for k in (i, j)})
                    group = dist.new_group(ranks) if self.world_size > len(ranks) else dist.group.WORLD
                    if self.rank in ranks:
                        out[(i, src_name)] = group
                        out[(j, copy_name)] = group
        return out

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

    def _loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        assert self._template is not None and self._loss_check is not None
        assert self._metrics is not None
        returned = self._template.pipeline_loss(output, target)  # type: ignore[operator]
        loss, metrics = self._metrics.split(returned)
        loss = returned_loss = self._loss_check.checked(returned if loss is None else loss, output)
        if self._weights is not None:  # the schedule divides by n: each micro-batch at its weight
            loss = loss * (self._weights[len(self._raw_losses)] * len(self._weights))
        self._raw_losses.append(returned_loss.detach().float())
        self._raw_metrics.append(metrics)
        return self.precision.scale(loss)

    # ------------------------------------------------------------------ the step

    def forward_backward(self, micro_batches: Sequence[Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert self._stage_mod is not None and self._template is not None, "call setup() first"
        assert self._loss_check is not None
        self._stage_mod.train()
        rows_batch = concat_rows(list(micro_batches))
        args, target = self._template.pipeline_batch(rows_batch)  # type: ignore[operator]
        rows = int(target.size(0))
        n = pipeline_microbatches(self.options, len(micro_batches), self.pp_size)
        if rows % n:
            raise UsageError(
                f"strategy.microbatches: {rows} rows per step do not split into {n} pipeline "
                f"micro-batches; make data.batch_size a multiple of {n * self._dp_size}"
            )
        schedule = self._schedule(n)
        self._raw_losses, self._raw_metrics = [], []
        self._weights = chunk_weights(self._template, rows_batch, n, micro_batches,
                                      f"model {self.settings.model_name!r}")
        if self.precision.scaler is not None:
            # Only the last stage scales a loss; the others' scalers must be initialised too.
            self.precision.scale(torch.zeros((), device=self.device))
        # The schedule checks every micro-batch against the strides it inferred once: contiguous.
        stage_args = tuple(a.contiguous() for a in move_to(list(args), self.device)) if self.is_first else ()
        kwargs: dict[str, Any] = {"target": target.to(self.device).contiguous(), "losses": []} if self.is_last else {}
        with self.autocast():
            schedule.step(*stage_args, return_outputs=False, **kwargs)
        assert self._metrics is not None
        sums: MetricSums | None = None
        if self.is_last:  # the micro-batches as single combines its own: by their rows or items
            sums = MetricSums()
            for j, found in enumerate(self._raw_metrics):
                sums.add(found, 1 / n if self._weights is None else self._weights[j])
        # a loss refused on the last stage, a new metric name: the same line, the same names on every rank
        names = self._metrics.agree(set(sums.sums) if sums is not None else None, self._loss_check.refusal(),
                                    self.any_rank)
        self._sync_tied_grads()
        loss = step_loss(self._raw_losses, self._weights) if self.is_last else None
        return self._mean_from_last(self._metrics.local(loss, sums, names), names)

    def _mean_from_last(self, local: torch.Tensor, names: tuple[str, ...]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, metrics)`` on every rank: the mean over data-parallel ranks of the last stages'
        ``local`` (:meth:`StageMetrics.local`; the tensor-parallel ranks of a last stage hold the
        same values), in one all-reduce."""
        t = local.detach().float().reshape(-1).to(self.comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return StageMetrics.unpacked(t / (self._dp_size * self.tp_size), names)

    def _sync_tied_grads(self) -> None:
        assert self._stage_mod is not None
        for name, group in self._tied_sync:
            grad = self._stage_mod.get_parameter(name).grad
            if grad is not None:
                dist.all_reduce(grad.to_local() if hasattr(grad, "to_local") else grad, op=dist.ReduceOp.SUM, group=group)

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Total norm over every stage (each tied weight counted once), as a device tensor;
        gradients scaled on the device (no host sync)."""
        assert self._stage_mod is not None and self.optimizer is not None
        self.precision.unscale_(self.optimizer)
        named = [(n, p) for n, p in self._stage_mod.named_parameters() if p.grad is not None]
        local = [(n, p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad) for n, p in named]
        sq = torch.zeros(1, dtype=torch.float32, device=self.device)
        for (n, g), (_, p) in zip(local, named, strict=True):
            if n not in self._tied:  # a copy's gradient equals its source's: count it once
                sq += g.detach().float().pow(2).sum() * self.norm_share(p.grad)
        sq = sq.to(self.comm_device)
        dist.all_reduce(sq, op=dist.ReduceOp.SUM)
        total = sq.sqrt().reshape(())
        if max_norm > 0 and local:
            coef = torch.clamp(max_norm / (total + clip.EPS), max=1.0).to(self.device)
            for _, g in local:
                g.mul_(coef)
        return total

    def norm_share(self, grad: Any) -> float:
        """The share of this rank's ``grad`` in the global squared norm summed over all ranks:
        1 (stages and shards each hold their own part); ``hybrid`` with tensor parallelism counts
        gradients that every tensor-parallel rank holds whole once."""
        return 1.0

    def evaluate(self, batch: Any, weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A plain forward through the stages with point-to-point sends (any batch shape); the last
        stage's loss and metrics as one part of weight ``weight`` (a data-parallel shard's share
        of a shorter batch; a NaN metric is not measured, :mod:`pipeline_metrics`), averaged over
        the data-parallel ranks. Any error the model raises on a stage (its forward, or
        ``pipeline_loss`` on the last) ends every rank with its line, as a refused loss does: the
        stages after it skip their forward (:func:`~deepseek_pro.strategies.pipeline_eval.evaluate_stage`)
        and every rank raises it through :meth:`~deepseek_pro.strategies.metric_names.MetricNames.agree`."""
        assert self._stage_mod is not None and self._template is not None
        stage = self._stage_mod
        metrics = self._metrics or StageMetrics(self.settings.model_calls)
        self._metrics = metrics
        was_training = stage.training
        stage.eval()
        try:
            with torch.no_grad():
                args, target = self._template.pipeline_batch(batch)  # type: ignore[operator]
                loss, found, problem = evaluate_stage(self, stage, args, target, template=self._template,
                                                      metrics=metrics)
        finally:
            stage.train(was_training)
        names = metrics.agree(found if self.is_last else None, problem, self.any_rank)
        sums: MetricSums | None = None
        if loss is not None:
            sums = MetricSums()
            sums.add(found, weight)
            loss = weighed(loss, weight)
        return self._mean_from_last(metrics.local(loss, sums, names), names)

    # ------------------------------------------------------------------ state

    def stage_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """This stage's full (unsharded) model and optimizer state under canonical names."""
        assert self._stage_mod is not None and self.optimizer is not None
        model_sd, optim_sd = pstate.stage_state(self._stage_mod, self.optimizer, tied=self._tied)
        if self.fused is not None:  # tensor-parallel fused rows back in canonical order
            model_sd, optim_sd = self.fused.canonical(model_sd, optim_sd)
        return model_sd, optim_sd

    def _writes_part(self) -> bool:
        return self._dp_rank == 0 and self.tp_rank == 0

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        directory = Path(directory)
        model_sd, optim_sd = self.stage_state()
        if self._writes_part():
            ckpt.save_model_state(pstate.part_path(directory, self.pp_rank, ckpt.MODEL_FILE), model_sd)
            ckpt.save_optimizer_state(pstate.part_path(directory, self.pp_rank, ckpt.OPTIMIZER_FILE), optim_sd)
        self.barrier()
        if self.is_global_zero:  # trainer.json first: it names the optimizer the parts' groups are held to
            ckpt.write_trainer_state(directory, trainer_state)
            pstate.merge_parts(directory, self.pp_size, self.host)
        self.barrier()

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        assert self._stage_mod is not None and self.optimizer is not None
        from deepseek_pro.checkpoint import raise_if_any

        state = ckpt.read_trainer_state(Path(directory))
        problem = None
        try:  # each stage checks its own part: a damaged one is one rank's to find, every rank's to raise
            pstate.load_stage(self._stage_mod, self.optimizer, Path(directory), tied=self._tied, fused=self.fused,
                             host=self.host)
        except CheckpointError as exc:
            problem = str(exc)
        raise_if_any(self, problem)
        return state

    def unwrapped_model(self) -> nn.Module:
        """A full, plain copy of the model with every stage's current weights (on every rank)."""
        assert self._template is not None
        model_sd, _ = self.stage_state()
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, model_sd if self._writes_part() else {})
        merged: dict[str, torch.Tensor] = {}
        for part in parts:
            merged.update(part)
        return pstate.rebuild_model(self._template, merged)
