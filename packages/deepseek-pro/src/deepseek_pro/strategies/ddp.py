"""``ddp``: torch DistributedDataParallel, one full replica per rank, optional gradient
compression (fp16 / bf16 / PowerSGD) with the communicated bytes counted every step.
Without compression no communication hook is registered (DDP's C++ all-reduce runs alone).

Gradient accumulation skips the all-reduce on all but the last micro-batch (``no_sync``, the
``accumulation`` part of the base class's step); clipping and evaluation are the base class's
(gradients are whole and identical on every rank after the all-reduce). Buffers: the base class
broadcasts rank 0's after each step (DDP's own ``broadcast_buffers`` is off).
``sync_batchnorm`` turns BatchNorm layers into SyncBatchNorm before wrapping
(:mod:`deepseek_pro.strategies.sync_batchnorm`). Activation checkpointing is the model's own (``train.activation_checkpointing``), mixed precision
is core's :class:`~deepseek.training.mixed_precision.Precision` (autocast + fp16 loss scaling; the
scaler's unscale/inf check runs on the already all-reduced gradients, so every rank skips the
same steps). Checkpoints: see :mod:`deepseek_pro.checkpoint` (``checkpoint = "full"`` writes the
canonical files from rank 0; ``"sharded"`` writes DCP safetensors shards).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from deepseek.config.validate import positive
from deepseek.errors import ConfigError, UsageError, shown
from deepseek.training.strategy import OptimizerFactory, StepSettings
from deepseek_pro import checkpoint as pro_ckpt
from deepseek_pro.compression import CountingHook, PowerSGDConfig
from deepseek_pro.strategies.base import DistributedStrategy
from deepseek_pro.strategies.sync_batchnorm import (
    DataParallelOptions,
    convert_batchnorm,
    sync_batchnorm_problem,
)


def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else "must be >= 1"


@dataclass(frozen=True)
class DDPOptions(DataParallelOptions):
    """``[strategy]`` keys of ``ddp``."""

    compression: Literal["none", "fp16", "bf16", "powersgd"] = "none"
    """Gradient-communication compression (a DDP communication hook)."""
    powersgd_rank: int = field(default=1, metadata={"check": _at_least_one})
    """Rank ``r`` of PowerSGD's low-rank approximation ``M ~ P Q^T``."""
    powersgd_start_iter: int = field(default=10, metadata={"check": _at_least_one})
    """Steps of plain all-reduce before compression starts (must be >= 2 with error feedback or
    warm start)."""
    powersgd_error_feedback: bool = True
    powersgd_warm_start: bool = True
    powersgd_min_compression_rate: float = field(default=2.0, metadata={"check": positive})
    """Matrices that PowerSGD would shrink by less than this factor are sent uncompressed."""
    bucket_cap_mb: float = field(default=25.0, metadata={"check": positive})
    static_graph: bool = False
    """torch DDP's ``static_graph``: the set of parameters used and the graph are the same every
    step (it may then skip work, and parameters unused on every step are allowed)."""
    find_unused_parameters: bool = False
    """torch DDP's ``find_unused_parameters``: a model whose steps leave some parameters without
    a gradient (a branch taken by the data, a head for some labels) needs it; DDP then walks the
    autograd graph every step to find them (slower). Without it such a model stops with a line
    naming this key."""
    checkpoint: Literal["full", "sharded"] = "full"
    """``full``: canonical safetensors from rank 0; ``sharded``: torch.distributed.checkpoint."""

    def __post_init__(self) -> None:
        powersgd = ("powersgd_rank", "powersgd_start_iter", "powersgd_error_feedback", "powersgd_warm_start",
                    "powersgd_min_compression_rate")
        changed = [k for k in powersgd if getattr(self, k) != DDPOptions.__dataclass_fields__[k].default]
        if changed and self.compression != "powersgd":  # they were ignored without a word
            raise ConfigError(f"strategy.{changed[0]}: applies to compression = \"powersgd\", and compression is "
                              f"{self.compression!r}; set compression = \"powersgd\", or leave {changed[0]} out")
        if (
            self.compression == "powersgd"
            and (self.powersgd_error_feedback or self.powersgd_warm_start)
            and self.powersgd_start_iter < 2
        ):
            raise ConfigError(
                f"strategy.powersgd_start_iter: PowerSGD with error feedback or warm start needs "
                f">= 2 plain steps first, got {self.powersgd_start_iter}; set it to 2 or more"
            )


class DDPStrategy(DistributedStrategy):
    """torch DDP on every rank of the job (``dp_size = world_size``)."""

    name: ClassVar[str] = "ddp"
    Options: ClassVar[type] = DDPOptions
    supports_compression: ClassVar[tuple[str, ...]] = ("fp16", "bf16", "powersgd")
    replicates_buffers: ClassVar[bool] = True
    engine_calls: ClassVar[frozenset[str]] = DistributedStrategy.engine_calls - {"unwrapped_model", "eval_module"}
    """The trained module stays past teardown (:meth:`release_engine`): these two still give it."""

    @classmethod
    def memory_row(cls, options: Any) -> str | None:
        return "ddp"

    @classmethod
    def check_config(cls, config: Any) -> None:
        """``static_graph`` with ``train.grad_accum > 1``: torch DDP's static graph breaks under
        ``no_sync`` (an internal assert at the first backward, pytorch/pytorch#143580; past it, the
        reductions stop after the first step), and accumulation skips the all-reduce that way;
        ``sync_batchnorm`` on the CPU (:func:`~deepseek_pro.strategies.sync_batchnorm.sync_batchnorm_problem`)."""
        o = config.strategy.options
        device = cls.resolved_device_type(o, cuda_available=torch.cuda.is_available())
        if problem := sync_batchnorm_problem(o, device_type=device):
            raise ConfigError(problem)
        if config.strategy.options.static_graph and config.train.grad_accum > 1:
            raise ConfigError(
                f"strategy.static_graph: torch DDP's static graph cannot accumulate gradients without "
                f"all-reducing them (no_sync fails inside torch, pytorch/pytorch#143580), and "
                f"train.grad_accum = {config.train.grad_accum} accumulates that way; set "
                f"strategy.static_graph = false or train.grad_accum = 1"
            )

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        super().__init__(options, precision=precision, host=host)
        self.ddp: DistributedDataParallel | None = None
        self._inner: nn.Module | None = None  # the module DDP wraps: kept past teardown (release_engine)
        self.hook: CountingHook | None = None
        self._plain_bytes = 0.0
        self._metrics: dict[str, float] = {}

    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory, settings: StepSettings) -> None:
        o = self.options
        model = self._inner = convert_batchnorm(model, o, warn=self.rank == 0).to(self.device)
        self.ddp = DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            bucket_cap_mb=o.bucket_cap_mb,
            static_graph=o.static_graph,
            find_unused_parameters=o.find_unused_parameters,
            gradient_as_bucket_view=True,
            # The base class broadcasts the persistent buffers after each step's forwards (DDP's
            # own broadcast, before each forward, would send them a second time, and the
            # non-persistent ones too).
            broadcast_buffers=False,
        )
        if o.compression == "none":
            # DDP's own C++ all-reduce: no Python on the backward's critical path. Every bucket
            # holds exactly the gradients, so the bytes sent per step are known up front.
            grads = [p for p in model.parameters() if p.requires_grad]  # tied weights once
            self._plain_bytes = float(sum(p.numel() * p.element_size() for p in grads))
        else:
            psgd = PowerSGDConfig(
                rank=o.powersgd_rank,
                start_iter=o.powersgd_start_iter,
                error_feedback=o.powersgd_error_feedback,
                warm_start=o.powersgd_warm_start,
                min_compression_rate=o.powersgd_min_compression_rate,
            )
            self.hook = CountingHook(o.compression, powersgd=psgd)
            self.hook.track(list(model.parameters()))
            self.ddp.register_comm_hook(state=None, hook=self.hook.as_hook())
        self.model = self.ddp
        self.optimizer = optimizer_factory(model.named_parameters())

    @property
    def module(self) -> nn.Module:
        """The wrapped model (canonical parameter names); after teardown, the trained module."""
        assert self._inner is not None, "call setup() first"
        return self._inner

    def release_engine(self) -> None:
        """The DDP wrapper (its reducer) and the communication hook go; the module stays as ``model``."""
        super().release_engine()
        self.model, self.ddp, self.hook = self._inner, None, None

    @property
    def eval_module(self) -> nn.Module:
        """Evaluation runs the inner module: no gradients, nothing to synchronise."""
        return self.module

    @contextlib.contextmanager
    def accumulation(self, *, is_last: bool) -> Iterator[None]:
        assert self.ddp is not None, "call setup() first"
        with contextlib.nullcontext() if is_last else self.ddp.no_sync():
            yield

    def forward_backward(self, micro_batches: Sequence[Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        try:
            out = super().forward_backward(micro_batches)
        except RuntimeError as exc:
            if "Expected to have finished reduction in the prior iteration" not in str(exc):
                raise
            static = (" (or strategy.static_graph = true when the same parameters are unused every step)"
                      if self.settings.grad_accum == 1 else "")  # static_graph is refused with accumulation
            names = unused_parameter_names(str(exc), self.module)
            more = f" and {len(names) - 4} more" if len(names) > 4 else ""
            which = f" ({', '.join(names[:4])}{more})" if names else ""
            raise UsageError(
                f"strategy.find_unused_parameters: some of the model's parameters got no gradient in the last "
                f"step{which}, which DDP cannot reduce by default; set strategy.find_unused_parameters = true{static}"
            ) from None
        if self.hook is not None:
            self._metrics = self.hook.take()
        else:
            sent = self._plain_bytes
            self._metrics = {"comm_bytes": sent, "comm_bytes_uncompressed": sent, "comm_reduction": 0.0}
        return out

    def unwrapped_model(self) -> nn.Module:
        return self.module

    def step_metrics(self) -> dict[str, float]:
        return dict(self._metrics)

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        assert self.optimizer is not None
        pro_ckpt.save_checkpoint(self, self.module, self.optimizer, Path(directory), trainer_state,
                                 sharded=self.options.checkpoint == "sharded")
        if self.hook is not None and self.hook.tracker is not None:  # PowerSGD's state, per rank
            self.hook.tracker.save(Path(directory), self.rank, self.world_size)

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        assert self.optimizer is not None
        state = pro_ckpt.load_checkpoint(self, self.module, self.optimizer, Path(directory))
        if self.hook is not None and self.hook.tracker is not None:
            self.hook.tracker.restore(Path(directory), self.rank, self.world_size)
        return state


_UNUSED_INDICES = re.compile(r"Parameter indices which did not receive grad for rank \d+: ([\d ]+)")


def unused_parameter_names(message: str, module: nn.Module) -> list[str]:
    """The parameters torch's reduction error lists by index, by name: DDP numbers the trainable
    parameters in ``named_parameters()`` order (modules in order, shared ones once). A parameter
    that gets no gradient in any step is usually a model's (or a plugin part's) bug, so the line
    names them, as lines show names (:func:`~deepseek.errors.shown`: a ModuleDict key with a line
    break or an ESC is ``$'parts.a\\nb.weight'``); ``[]`` where the message lists none (another
    torch version's wording)."""
    found = _UNUSED_INDICES.search(message)
    if found is None:
        return []
    trainable = [shown(name) for name, param in module.named_parameters() if param.requires_grad]
    return [trainable[int(i)] for i in found.group(1).split() if int(i) < len(trainable)]
