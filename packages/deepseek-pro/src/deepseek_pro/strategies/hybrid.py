"""``hybrid``: pipeline stages x sharded data parallel on a 2-D DeviceMesh.

The seed's "parameter server + pipeline parallel" hybrid: ranks form a ``(pp, dp)`` mesh
(``init_device_mesh(device, (pp, dp), mesh_dim_names=("pp", "dp"))``, rank = pp_index * dp +
dp_index). Along ``pp`` the model is cut into stages exactly as under ``pipeline``; along ``dp``
each stage is ``fully_shard``-ed (FSDP2, ZeRO-3), so the data-parallel group of a stage holds its
parameters, gradients and optimizer state in shards and serves the full weights to each replica
on demand — the sharded data-parallel dimension plays the parameter server. Each data-parallel
replica takes its rows of the global batch; FSDP averages the stage's gradients over ``dp``.

``pp_size = 1`` is FSDP with a one-stage pipeline; ``pp_size = world size`` is ``pipeline``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from deepseek.config.validate import positive
from deepseek.errors import ConfigError, UsageError
from deepseek.models.protocol import model_capabilities
from deepseek_pro.strategies.pipeline import (
    PipelineOptions,
    PipelineStrategy,
    check_pipeline_fit,
    model_blocks,
)

if TYPE_CHECKING:
    from deepseek.config.schema import Config


@dataclass(frozen=True)
class HybridOptions(PipelineOptions):
    """``[strategy]`` keys of ``hybrid``."""

    pp_size: int = field(default=2, metadata={"check": positive})
    """Pipeline stages; the data-parallel size is ``world_size / pp_size``."""
    reshard_after_forward: bool = True
    """Free gathered weights after each forward (ZeRO-3); False keeps them until backward (ZeRO-2
    style, more memory, less communication)."""


def mesh_shape(world_size: int, pp_size: int) -> tuple[int, int]:
    """``(pp, dp)`` for ``world_size`` ranks; UsageError when ``pp_size`` does not divide it."""
    if pp_size > world_size or world_size % pp_size:
        raise UsageError(
            f"strategy.pp_size: {pp_size} pipeline stages do not divide {world_size} processes; "
            f"pick a divisor of {world_size} or launch a multiple of {pp_size} processes"
        )
    return pp_size, world_size // pp_size


class HybridStrategy(PipelineStrategy):
    """Pipeline parallel over ``pp`` x FSDP2 over ``dp``."""

    name: ClassVar[str] = "hybrid"
    Options: ClassVar[type] = HybridOptions

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        super().__init__(options, precision=precision, host=host)
        self.mesh: Any = None

    @classmethod
    def check_launch(cls, config: Config, world_size: int, model: nn.Module) -> None:
        """Reject before launch what cannot fit ``world_size`` ranks (called by the launcher)."""
        try:
            pp, dp = mesh_shape(world_size, config.strategy.options.pp_size)
        except UsageError as exc:
            raise ConfigError(str(exc)) from exc
        check_pipeline_fit(config, pp, dp, model_blocks(model))

    def _build_topology(self) -> None:
        from torch.distributed.device_mesh import init_device_mesh

        pp, dp = mesh_shape(self.world_size, self.options.pp_size)
        self.mesh = init_device_mesh(self.device.type, (pp, dp), mesh_dim_names=("pp", "dp"))
        self.pp_size, self._dp_size = pp, dp
        self.pp_rank = self.mesh["pp"].get_local_rank()
        self._dp_rank = self.mesh["dp"].get_local_rank()
        self.pp_group = self.mesh["pp"].get_group()
        if self.pp_rank * dp + self._dp_rank != self.rank:
            raise RuntimeError("unexpected DeviceMesh layout: rank != pp_index * dp + dp_index")

    def shard_stage(self, stage: nn.Module) -> nn.Module:
        """FSDP2 over the ``dp`` sub-mesh: each block its own unit, then the stage (embeddings,
        final norm and head) as the root unit."""
        from torch.distributed.fsdp import fully_shard

        dp_mesh = self.mesh["dp"]
        reshard = self.options.reshard_after_forward
        blocks = stage.block_modules() if "blocks" in model_capabilities(stage) else []  # type: ignore[operator]
        for block in blocks:
            fully_shard(block, mesh=dp_mesh, reshard_after_forward=reshard)
        fully_shard(stage, mesh=dp_mesh, reshard_after_forward=reshard)
        return stage
