"""``fsdp`` (alias ``zero3``): FSDP2 ``fully_shard`` — parameters, gradients and optimizer state
sharded over every rank (ZeRO stage 3).

Each block of a model that offers per-block structure (``block_modules``, see
:mod:`deepseek.models.protocol`) is its own FSDP unit (all-gathered just before it runs, resharded
after), then the root (embeddings, final norm, tied head); a model without blocks is one unit. Mixed precision is a ``MixedPrecisionPolicy``:
parameters are cast to the run's compute dtype for forward/backward (``param_dtype``), gradients
are reduce-scattered in ``reduce_dtype`` — fp32 by default; ``compression = "bf16"`` (or
``reduce_dtype = "bf16"``) halves the gradient traffic, FSDP's form of gradient compression.
``cpu_offload`` keeps sharded parameters, gradients and optimizer state in host memory
(``CPUOffloadPolicy``; its host buffers are pinned for fast copies to a CUDA device, and not
pinned on a CPU-only machine, where pinning needs a GPU and there is nothing to copy to).
``sync_batchnorm`` turns BatchNorm layers into SyncBatchNorm before sharding
(:mod:`deepseek_pro.strategies.sync_batchnorm`). Gradient accumulation turns gradient sync off on all but the last micro-batch (the
``accumulation`` part of the base class's step). Clipping computes the total norm
over the sharded gradients (a DTensor reduction). Buffers are not sharded: the base class
broadcasts rank 0's after each step.

``step_metrics`` reports ``comm_bytes`` (reduce-scatter payload per rank and step) computed from
the sharded parameters' padded sizes and the reduce dtype, not counted by a hook, next to
``comm_bytes_uncompressed`` (the same in fp32) and ``allgather_bytes`` (parameter all-gathers).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from deepseek.dtypes import torch_dtype
from deepseek.errors import ConfigError, UsageError
from deepseek.models.capabilities import model_capabilities
from deepseek.training import clip
from deepseek.training.strategy import OptimizerFactory, StepSettings
from deepseek_pro import checkpoint as pro_ckpt
from deepseek_pro.strategies.base import DistributedStrategy
from deepseek_pro.strategies.sync_batchnorm import (
    DataParallelOptions,
    convert_batchnorm,
    sync_batchnorm_problem,
)
from deepseek_pro.strategies.twin import materialize, meta_twin

_FP16_MESSAGE = (
    "precision.dtype: fsdp/zero3 runs fp32 or bf16 (its gradients are sharded, so fp16 loss "
    "scaling cannot check them on one rank); use precision.dtype = 'bf16', or strategy ddp for fp16"
)


@dataclass(frozen=True)
class FSDPOptions(DataParallelOptions):
    """``[strategy]`` keys of ``fsdp`` / ``zero3``."""

    compression: Literal["none", "fp16", "bf16"] = "none"
    """Reduced-precision gradient reduce-scatter (``bf16``/``fp16``)."""
    reduce_dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """dtype of the gradient reduce-scatter; ``auto``: from ``compression``, else fp32."""
    cpu_offload: bool = False
    reshard_after_forward: bool = True
    """Free gathered parameters after forward (ZeRO-3); false keeps them until backward (ZeRO-2-like)."""
    checkpoint: Literal["full", "sharded"] = "full"
    """``full``: canonical safetensors gathered on rank 0; ``sharded``: DCP shards per rank."""

    def __post_init__(self) -> None:
        if self.compression != "none" and self.reduce_dtype not in ("auto", self.compression):
            raise ConfigError(
                f"strategy.reduce_dtype: {self.reduce_dtype!r} contradicts compression = "
                f"{self.compression!r}; set only one of them"
            )

    @property
    def resolved_reduce_dtype(self) -> str:
        """The reduce-scatter dtype name: ``fp32``, ``bf16`` or ``fp16``."""
        if self.reduce_dtype != "auto":
            return self.reduce_dtype
        return self.compression if self.compression != "none" else "fp32"


class FSDPStrategy(DistributedStrategy):
    """FSDP2 (``torch.distributed.fsdp.fully_shard``) over all ranks (``dp_size = world_size``)."""

    optimizer_parameters = "dtensor"

    name: ClassVar[str] = "fsdp"
    Options: ClassVar[type] = FSDPOptions
    supports_compression: ClassVar[tuple[str, ...]] = ("fp16", "bf16")
    replicates_buffers: ClassVar[bool] = True

    @classmethod
    def memory_row(cls, options: Any) -> str | None:
        return "zero3+offload" if options.cpu_offload else "zero3"

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        super().__init__(options, precision=precision, host=host)
        self.mesh: Any = None
        self._template: nn.Module | None = None
        self._metrics: dict[str, float] = {}
        self._per_step: dict[str, float] = {}

    @classmethod
    def check_config(cls, config: Any) -> None:
        """fp16 (loss scaling over sharded gradients) is not supported, nor ``sync_batchnorm`` on
        the CPU (:func:`~deepseek_pro.strategies.sync_batchnorm.sync_batchnorm_problem`)."""
        if config.precision.dtype == "fp16":
            raise ConfigError(_FP16_MESSAGE)
        o = config.strategy.options
        device = cls.resolved_device_type(o, cuda_available=torch.cuda.is_available())
        if problem := sync_batchnorm_problem(o, device_type=device):
            raise ConfigError(problem)

    def setup_environment(self) -> None:
        super().setup_environment()
        if self.precision.name == "fp16":
            self.teardown()
            raise UsageError(_FP16_MESSAGE)

    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory, settings: StepSettings) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import (
            CPUOffloadPolicy,
            MixedPrecisionPolicy,
            OffloadPolicy,
            fully_shard,
        )

        o = self.options
        self._template = meta_twin(model)  # the plain model's layout: what unwrapped_model gives back
        model = convert_batchnorm(model, o, warn=self.rank == 0)
        self.mesh = init_device_mesh(self.device.type, (self.world_size,), mesh_dim_names=("dp",))
        compute = self.precision.dtype
        policy = MixedPrecisionPolicy(
            param_dtype=None if compute == torch.float32 else compute,
            reduce_dtype=torch_dtype(o.resolved_reduce_dtype),
        )
        offload = CPUOffloadPolicy(pin_memory=self.device.type == "cuda") if o.cpu_offload else OffloadPolicy()
        if not o.cpu_offload:
            model = model.to(self.device)
        kwargs = {"mesh": self.mesh, "mp_policy": policy, "offload_policy": offload,
                  "reshard_after_forward": o.reshard_after_forward}
        units = list(model.block_modules()) if "blocks" in model_capabilities(model) else []
        resharded: list[nn.Module] = []
        for i, block in enumerate(units):
            # The last block's parameters are needed again at once by backward: keep them (torchtitan).
            reshard = o.reshard_after_forward and i < len(units) - 1
            fully_shard(block, **{**kwargs, "reshard_after_forward": reshard})
            if reshard:
                resharded.append(block)
        fully_shard(model, **kwargs)  # FSDP2 never reshards the root after forward
        self.model = model
        self.optimizer = optimizer_factory(model.named_parameters())
        self._per_step = self._traffic(model, resharded, len(units) + 1)

    def _traffic(self, model: nn.Module, resharded: list[nn.Module], units: int) -> dict[str, float]:
        """Bytes each rank hands to collectives per optimizer step (computed from shapes)."""
        padded = self._padded(model.parameters())
        again = sum(self._padded(block.parameters()) for block in resharded)  # gathered again in backward
        reduce_size = torch_dtype(self.options.resolved_reduce_dtype).itemsize
        param_size = self.precision.dtype.itemsize  # parameters are all-gathered in the compute dtype
        return {
            "comm_bytes": float(padded * reduce_size),
            "comm_bytes_uncompressed": float(padded * 4),
            "allgather_bytes": float((padded + again) * param_size),
            "fsdp_units": float(units),
        }

    def _padded(self, params: Iterator[nn.Parameter]) -> int:
        """Elements of ``params`` padded to a multiple of the world size along dim 0, as sharded."""
        w, total = self.world_size, 0
        for p in params:
            rows = p.shape[0] if p.dim() else 1
            total += math.ceil(rows / w) * w * (p.numel() // max(rows, 1))
        return total

    @contextlib.contextmanager
    def accumulation(self, *, is_last: bool) -> Iterator[None]:
        assert self.model is not None
        self.model.set_requires_gradient_sync(is_last)  # type: ignore[operator]
        try:
            yield
        finally:
            self.model.set_requires_gradient_sync(True)  # type: ignore[operator]

    def forward_backward(self, micro_batches: Sequence[Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = super().forward_backward(micro_batches)
        m = dict(self._per_step)
        m["comm_reduction"] = 1.0 - m["comm_bytes"] / m["comm_bytes_uncompressed"]
        # Under accumulation, parameters are gathered once per micro-batch.
        m["allgather_bytes"] *= len(micro_batches)
        self._metrics = m
        return out

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        assert self.model is not None
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros(())
        norm = torch.nn.utils.get_total_norm(grads)
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()  # the DTensor norm is partial per shard: reduce it
        norm = norm.float()
        if max_norm > 0:
            # The float32 coefficient torch.nn.utils.clip_grad_norm_ applies, kept on the device:
            # no host sync (reading it per gradient would be ~290 syncs a step on the 1.3b model).
            coef = torch.clamp(max_norm / (norm + clip.EPS), max=1.0)
            local = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
            for group in _by_device(local).values():
                torch._foreach_mul_(group, coef.to(group[0].device))
        return norm

    def release_engine(self) -> None:
        """The sharded module (its parameters shards over the mesh) goes with the mesh."""
        super().release_engine()
        self.mesh = None

    def unwrapped_model(self) -> nn.Module:
        """A plain CPU copy with the full weights (a collective: call it on every rank)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        assert self.model is not None and self._template is not None
        # Without cpu_offload every rank receives the full tensors (rank 0 only, with it).
        full = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True))
        plain = materialize(self._template, "cpu")
        plain.load_state_dict({k: v.detach().cpu() for k, v in full.items()})
        return plain

    def step_metrics(self) -> dict[str, float]:
        return dict(self._metrics)

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        assert self.model is not None and self.optimizer is not None
        pro_ckpt.save_checkpoint(self, self.model, self.optimizer, Path(directory), trainer_state,
                                 sharded=self.options.checkpoint == "sharded")

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        assert self.model is not None and self.optimizer is not None
        return pro_ckpt.load_checkpoint(self, self.model, self.optimizer, Path(directory))


def _by_device(tensors: list[torch.Tensor]) -> dict[torch.device, list[torch.Tensor]]:
    out: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        out.setdefault(t.device, []).append(t)
    return out
