"""``hybrid``: pipeline stages x sharded data parallel x tensor parallel on a 3-D DeviceMesh.

The seed's "parameter server + pipeline parallel" hybrid: ranks form a ``(pp, dp, tp)`` mesh
(``init_device_mesh(device, (pp, dp, tp), mesh_dim_names=("pp", "dp", "tp"))``, rank =
(pp_index * dp + dp_index) * tp + tp_index: the tensor-parallel ranks of a stage replica are
neighbours, on one node). Along ``pp`` the model is cut into stages exactly as under
``pipeline``; along ``tp`` (``tp_size > 1``) each stage's blocks are split by the model's
tensor-parallel plan as under ``tp`` (without sequence parallelism); along ``dp`` each stage is
``fully_shard``-ed (FSDP2, ZeRO-3), so the data-parallel group of a stage holds its parameters,
gradients and optimizer state in shards and serves the full weights to each replica on demand —
the sharded data-parallel dimension plays the parameter server. Each data-parallel replica takes
its rows of the global batch; FSDP averages the stage's gradients over ``dp``.

``pp_size = 1`` is FSDP with a one-stage pipeline; ``pp_size = world size`` is ``pipeline``;
``tp_size = 1`` (the default) splits no layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from deepseek.config.validate import positive
from deepseek.errors import ConfigError, UsageError
from deepseek.models.capabilities import model_capabilities
from deepseek.training.strategy import OptimizerFactory, StepSettings
from deepseek_pro.strategies.pipeline import PipelineStrategy
from deepseek_pro.strategies.pipeline_rules import PipelineOptions, check_pipeline_fit, model_blocks
from deepseek_pro.strategies.tp import check_batch_sequence, check_sequence_split

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from deepseek.config.schema import Config


@dataclass(frozen=True)
class HybridOptions(PipelineOptions):
    """``[strategy]`` keys of ``hybrid``."""

    pp_size: int = field(default=2, metadata={"check": positive})
    """Pipeline stages; the data-parallel size is ``world_size / (pp_size * tp_size)``."""
    tp_size: int = field(default=1, metadata={"check": positive})
    """Tensor-parallel ranks per stage replica (the model must offer ``tensor_parallel``); keep
    them within one node."""
    sequence_parallel: bool = False
    """With ``tp_size > 1``: norms, dropout and the residual stream between the sharded layers
    hold ``seq / tp_size`` positions per rank, and so do the hidden states sent between stages
    (each tensor-parallel rank to the same one of the next stage); ``data.seq_len`` must divide
    by ``tp_size``."""
    reshard_after_forward: bool = True
    """Free gathered weights after each forward (ZeRO-3); False keeps them until backward (ZeRO-2
    style, more memory, less communication)."""


def mesh_shape(world_size: int, pp_size: int, tp_size: int = 1) -> tuple[int, int]:
    """``(pp, dp)`` for ``world_size`` ranks (``dp = world_size / (pp * tp)``); UsageError when
    ``pp_size`` x ``tp_size`` does not divide it."""
    if pp_size > world_size or world_size % pp_size:
        raise UsageError(
            f"strategy.pp_size: {pp_size} pipeline stages do not divide {world_size} processes; "
            f"pick a divisor of {world_size} or launch a multiple of {pp_size} processes"
        )
    if (world_size // pp_size) % tp_size:
        raise UsageError(
            f"strategy.tp_size: {pp_size} stages x {tp_size} tensor-parallel ranks do not divide "
            f"{world_size} processes; launch a multiple of {pp_size * tp_size} processes or change them"
        )
    return pp_size, world_size // (pp_size * tp_size)


class HybridStrategy(PipelineStrategy):
    """Pipeline parallel over ``pp`` x FSDP2 over ``dp`` x tensor parallel over ``tp``."""

    optimizer_parameters = "dtensor"

    name: ClassVar[str] = "hybrid"
    Options: ClassVar[type] = HybridOptions

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        super().__init__(options, precision=precision, host=host)
        self.mesh: Any = None
        self._tp_plan: Any = None

    @classmethod
    def required_capabilities(cls, config: Config) -> dict[str, str]:
        needs = super().required_capabilities(config)
        options = config.strategy.options  # asked with other strategies' configs too
        if isinstance(options, HybridOptions) and options.tp_size > 1:
            needs["tensor_parallel"] = f"strategy {config.strategy.name!r} with strategy.tp_size > 1"
        return needs

    def setup_inference(self, model: nn.Module, settings: StepSettings) -> nn.Module:
        """Not offered: serve with ``pipeline`` (stages over the processes) or ``tp`` (heads)."""
        raise UsageError(
            "--strategy hybrid: eval and generate do not run under hybrid; use --strategy pipeline (the model's "
            "stages over the processes) or --strategy tp (its heads over the processes)"
        )

    @classmethod
    def check_launch(cls, config: Config, world_size: int, model: nn.Module) -> None:
        """Reject before launch what cannot fit ``world_size`` ranks (called by the launcher)."""
        tp, pp = config.strategy.options.tp_size, config.strategy.options.pp_size
        dp = cls.data_parallel_size(config, world_size)
        check_pipeline_fit(config, pp, dp, model_blocks(model))
        sequence_parallel = config.strategy.options.sequence_parallel
        if sequence_parallel:
            check_sequence_split(config, tp)
        if tp > 1 and "tensor_parallel" in model_capabilities(model):
            model.tensor_parallel_plan(tp, sequence_parallel=sequence_parallel)  # type: ignore[operator]

    @classmethod
    def data_parallel_size(cls, config: Config, world_size: int) -> int:
        """``world_size / (pp_size * tp_size)``; ConfigError when that does not divide."""
        try:
            return mesh_shape(world_size, config.strategy.options.pp_size, config.strategy.options.tp_size)[1]
        except UsageError as exc:
            raise ConfigError(str(exc)) from exc

    @classmethod
    def check_config(cls, config: Config) -> None:
        """``sequence_parallel`` needs tensor parallelism (``tp_size > 1``)."""
        options = config.strategy.options
        if options.sequence_parallel and options.tp_size == 1:
            raise ConfigError("strategy.sequence_parallel: sequence parallelism splits the positions over the "
                              "tensor-parallel ranks; set strategy.tp_size > 1 or sequence_parallel = false")

    def _build_topology(self) -> None:
        from torch.distributed.device_mesh import init_device_mesh

        tp = self.options.tp_size
        pp, dp = mesh_shape(self.world_size, self.options.pp_size, tp)
        self.mesh = init_device_mesh(self.device.type, (pp, dp, tp), mesh_dim_names=("pp", "dp", "tp"))
        self.pp_size, self._dp_size, self.tp_size = pp, dp, tp
        self.pp_rank = self.mesh["pp"].get_local_rank()
        self._dp_rank = self.mesh["dp"].get_local_rank()
        self.tp_rank = self.mesh["tp"].get_local_rank()
        self.pp_group = self.mesh["pp"].get_group()
        if (self.pp_rank * dp + self._dp_rank) * tp + self.tp_rank != self.rank:
            raise RuntimeError("unexpected DeviceMesh layout: rank != (pp_index * dp + dp_index) * tp + tp_index")

    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory, settings: StepSettings) -> None:
        sp = self.options.sequence_parallel
        self._tp_plan = (model.tensor_parallel_plan(self.tp_size, sequence_parallel=sp)  # type: ignore[operator]
                         if self.tp_size > 1 else None)
        super().setup(model, optimizer_factory, settings)

    def release_engine(self) -> None:
        """The pipeline's parts, then the (pp, dp, tp) mesh the stage is sharded over."""
        super().release_engine()
        self.mesh = self.pp_group = None

    def forward_backward(self, micro_batches: Sequence[Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The pipeline's step, then, with ``dp > 1``, each stage's persistent buffers from its
        first data-parallel replica (as ``ddp`` and ``fsdp`` take rank 0's): a forward that
        updates them from its own rows (BatchNorm's statistics) would let the replicas differ."""
        out = super().forward_backward(micro_batches)
        if self._dp_size > 1:
            import torch.distributed as dist

            group = self.mesh.get_group("dp")
            self.sync_buffers(src=dist.get_global_rank(group, 0), process_group=group)
        return out

    def to_device(self, batch: Any) -> Any:
        if self.options.sequence_parallel:
            check_batch_sequence(batch, self.tp_size)
        return super().to_device(batch)

    def norm_share(self, grad: object) -> float:
        """A gradient every tensor-parallel rank holds whole (not split by the plan) counts once."""
        if self.tp_size == 1:
            return 1.0
        from torch.distributed.tensor import DTensor, Shard

        if isinstance(grad, DTensor) and "tp" in (grad.device_mesh.mesh_dim_names or ()):
            placement = grad.placements[grad.device_mesh.mesh_dim_names.index("tp")]
            if isinstance(placement, Shard):
                return 1.0
        return 1.0 / self.tp_size

    def shard_stage(self, stage: nn.Module) -> nn.Module:
        """Tensor parallel over the ``tp`` sub-mesh (``tp_size > 1``: the model's plan, fused rows
        reordered), then FSDP2 over the ``dp`` sub-mesh: each block its own unit, then the stage
        (embeddings, final norm and head) as the root unit."""
        from torch.distributed.fsdp import fully_shard

        if self._tp_plan is not None:
            from torch.distributed.tensor.parallel import parallelize_module

            from deepseek_pro.strategies.tp_layout import FusedRows

            self.fused = FusedRows(stage, self._tp_plan.fused_rows, self.tp_size)
            self.fused.reorder_model(stage)
            parallelize_module(stage, self.mesh["tp"], dict(self._tp_plan.styles))
        dp_mesh = self.mesh["dp"]
        reshard = self.options.reshard_after_forward
        blocks = stage.block_modules() if "blocks" in model_capabilities(stage) else []  # type: ignore[operator]
        for block in blocks:
            fully_shard(block, mesh=dp_mesh, reshard_after_forward=reshard)
        fully_shard(stage, mesh=dp_mesh, reshard_after_forward=reshard)
        return stage
