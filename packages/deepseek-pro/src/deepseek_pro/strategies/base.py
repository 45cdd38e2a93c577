"""Shared plumbing of every multi-process strategy: the process group, the device, collectives and
the cluster consistency check.

A :class:`DistributedStrategy` runs under torchrun (``deepseek launch -n N -- train ...``): it reads
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` through core's
:func:`deepseek.training.launcher_env.launcher_env` (which refuses a process without them), joins
the process group (NCCL on CUDA, gloo on CPU) with a collective timeout, and checks that every rank runs the
same plugin distributions at the same versions before any training starts.

Buffers of data-parallel replicas (``replicates_buffers``: ddp, fsdp, deepspeed): a training forward
may update the model's buffers (BatchNorm's running statistics) from this rank's rows alone, so after
every step's forwards the persistent ones are broadcast from rank 0 (:meth:`DistributedStrategy.sync_buffers`),
as torch DDP's ``broadcast_buffers`` does: a resumed run continues bit-exactly and an evaluation gives what
the checkpoint gives. A model without persistent buffers (the GPTs) sends nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from deepseek.config.validate import positive
from deepseek.errors import UsageError
from deepseek.training.launcher_env import launcher_env
from deepseek.training.strategy import Strategy
from deepseek_pro.strategies.cluster import ClusterMismatchError, cluster_report, compare_reports
from deepseek_pro.strategies.metric_names import MetricNames
from deepseek_pro.strategies.released import ENGINE_CALLS, guard_engine_calls, released_error
from deepseek_pro.strategies.rendezvous import fresh_store, rendezvous_errors, signals_end_the_wait

if TYPE_CHECKING:
    import torch
    from torch import nn


MAX_TIMEOUT_S = 7 * 24 * 3600
"""The longest collective timeout (torch's process groups overflow a C int far past it)."""


def _timeout_problem(value: float) -> str | None:
    return positive(value) or (None if value <= MAX_TIMEOUT_S else f"must be at most {MAX_TIMEOUT_S} (a week)")


@dataclass(frozen=True)
class DistributedOptions:
    """Keys of ``[strategy]`` that every distributed strategy accepts."""

    timeout_s: float = field(
        default=600.0, metadata={"check": lambda v: _timeout_problem(v), "help": "collective timeout in seconds"}
    )
    """A collective that waits longer than this fails (a dead or hung rank ends the job); at most
    a week (:data:`MAX_TIMEOUT_S`)."""
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    """``auto``: NCCL when CUDA is available, gloo otherwise."""


_BACKEND_DEVICES: dict[str, Literal["cpu", "cuda"] | None] = {"gloo": "cpu", "nccl": "cuda", "auto": None}
"""``DistributedOptions.backend`` -> the device its ranks compute on (None: picked at set-up)."""


class DistributedStrategy(Strategy):
    """Base of the torch.distributed strategies (ddp, fsdp, deepspeed, pipeline, hybrid).

    Subclasses implement the model-facing methods; this class owns the process group, the
    device, the collectives and :meth:`teardown`. ``Options`` must subclass
    :class:`DistributedOptions` (``timeout_s`` and ``backend`` are read from it): a subclass
    declaring other ``Options`` is a TypeError where it is defined (:meth:`__init_subclass__`).
    """

    Options: ClassVar[type[DistributedOptions]] = DistributedOptions
    options: DistributedOptions
    needs_launcher: bool = True
    replicates_buffers: ClassVar[bool] = False
    """Every rank runs the whole model on its own rows (ddp, fsdp, deepspeed): the persistent
    buffers are rank 0's on every rank after each step (:meth:`sync_buffers`). False where a
    rank holds a pipeline stage (its buffers are its stage's) or all ranks see the same rows (tp)."""
    engine_calls: ClassVar[frozenset[str]] = ENGINE_CALLS
    """The members refused after teardown (:meth:`engine_held`), wrapped where a class defines them
    (:mod:`~deepseek_pro.strategies.released`); a strategy leaves out those that still answer then (ddp's trained module)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.Options
        if not (isinstance(declared, type) and issubclass(declared, DistributedOptions)):
            raise TypeError(f"{cls.__module__}.{cls.__qualname__}.Options: {declared!r} does not subclass "
                            "deepseek_pro.strategies.base.DistributedOptions, whose timeout_s and backend every "
                            "DistributedStrategy reads; derive the Options dataclass from it (docs/plugins.md "
                            "section 12)")
        guard_engine_calls(cls, cls.engine_calls)

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        super().__init__(options, precision=precision, host=host)
        self._rank = 0
        self._world_size = 1
        self._local_rank = 0
        self._device: torch.device | None = None
        self._owns_group = False
        self._released = False  # release_engine ran: unwrapped_model and the like refuse (engine_held)
        # The model's metric names, agreed on by every rank (reduce_mean): a training step's and an
        # evaluation's apart (a model may report other metrics in eval mode, e.g. whole-set ones)
        self._metric_names = self._agreeing = MetricNames()
        self._eval_metric_names = MetricNames()

    # ------------------------------------------------------------------ topology

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def local_rank(self) -> int:
        """Rank of this process on its node (picks the CUDA device)."""
        return self._local_rank

    @property
    def device(self) -> torch.device:
        if self._device is None:
            raise RuntimeError(f"{type(self).__name__}.setup_environment() has not been called")
        return self._device

    @property
    def backend(self) -> str:
        """The process-group backend this job uses (resolved from ``options.backend``)."""
        import torch

        choice = self.options.backend
        if choice == "auto":
            return "nccl" if torch.cuda.is_available() else "gloo"
        return choice

    @classmethod
    def device_type(cls, options: DistributedOptions) -> Literal["cpu", "cuda"] | None:
        """Where the ranks compute, from ``options.backend``: gloo's on the CPU, NCCL's on their
        CUDA device (:meth:`setup_environment`), ``auto``'s on CUDA when the process has it."""
        return _BACKEND_DEVICES[options.backend]

    @classmethod
    def resolved_device_type(cls, options: DistributedOptions, *, cuda_available: bool) -> Literal["cpu", "cuda"]:
        """:meth:`device_type` with its ``None`` (``auto``) resolved as :attr:`backend` resolves it
        at set-up: CUDA where ``cuda_available``, else the CPU. The one rule of the checks made
        before any process starts (DeepSpeed's ``check_launch``, ``sync_batchnorm``'s,
        ``deepseek launch``'s). The answer is read through core's ``checked_device_type``: one
        that is not "cpu", "cuda" or None is the strategy's broken answer."""
        from deepseek.training.strategy_rules import checked_device_type

        return checked_device_type(cls, options) or ("cuda" if cuda_available else "cpu")

    # ------------------------------------------------------------------ set-up

    def setup_environment(self) -> None:
        """Join the process group from the torchrun environment, pick the device the strategy
        declares (:meth:`resolved_device_type`), check the cluster is consistent."""
        import torch
        import torch.distributed as dist

        env = launcher_env(self.name)
        self._rank, self._world_size, self._local_rank = env.rank, env.world_size, env.local_rank
        self._released = False
        backend, cuda = self.backend, torch.cuda.is_available()
        if backend == "nccl" and not cuda:
            raise UsageError("strategy.backend: 'nccl' needs CUDA devices; use 'gloo' on CPU")
        if type(self).resolved_device_type(self.options, cuda_available=cuda) == "cuda":
            if not cuda:  # a subclass declaring CUDA under gloo, run where none is visible
                raise UsageError(f"strategy {self.name!r} computes on CUDA devices (its device_type) and none is "
                                 f"visible to rank {self._rank}; run it where CUDA devices are")
            torch.cuda.set_device(self._local_rank)
            self._device = torch.device("cuda", self._local_rank)
        else:
            self._device = torch.device("cpu")
        if not dist.is_initialized():
            kwargs: dict[str, Any] = {}
            if backend == "nccl":
                kwargs["device_id"] = self._device
            timeout = timedelta(seconds=self.options.timeout_s)
            with signals_end_the_wait(), rendezvous_errors(self._world_size):
                # CPU tensors (FSDP2 CPU offload, object collectives) need gloo beside NCCL.
                dist.init_process_group(
                    backend="cpu:gloo,cuda:nccl" if backend == "nccl" else backend,
                    store=fresh_store(self._rank, self._world_size, timeout),
                    rank=self._rank,
                    world_size=self._world_size,
                    timeout=timeout,
                    **kwargs,
                )
            self._owns_group = True
        self.check_cluster()
        if not self.precision.is_bound:
            self.precision.bind(self._device)

    def check_cluster(self) -> None:
        """All-gather :func:`cluster_report` and fail on every rank if any rank differs."""
        import torch.distributed as dist

        reports: list[Any] = [None] * self._world_size
        dist.all_gather_object(reports, cluster_report(self.host))
        problem = compare_reports(reports)
        if problem:
            self.teardown()
            raise ClusterMismatchError(problem)

    # ------------------------------------------------------------------ collectives

    def barrier(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            if self.backend == "nccl":
                dist.barrier(device_ids=[self._local_rank])
            else:
                dist.barrier()

    def all_reduce_tensor_mean(self, tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
        """Mean of ``tensor`` over the ranks of ``group`` (all ranks by default), in place."""
        import torch.distributed as dist

        if not dist.is_initialized():
            return tensor
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
        tensor /= dist.get_world_size(group)
        return tensor

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        import torch.distributed as dist

        if not dist.is_initialized():
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src, device=self.comm_device)
        return box[0]

    def any_rank(self, flag: bool) -> bool:
        """MAX-all-reduce of one number, on the CPU whenever the process group has a CPU backend
        (gloo, or the gloo half of ``cpu:gloo,cuda:nccl``): no device sync in the step loop."""
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            return flag
        on_cpu = "cpu:" in str(dist.get_backend_config())
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device="cpu" if on_cpu else self.comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    @property
    def comm_device(self) -> torch.device:
        """Where tensors handed to collectives must live (the CUDA device for NCCL, else CPU)."""
        import torch

        return self.device if self.backend == "nccl" else torch.device("cpu")

    def teardown(self) -> None:
        """Leave the process group this strategy made, its engine first (:meth:`release_engine`, then a collection):
        a DDP reducer, FSDP's state or a DeepSpeed engine left to the collector went past destroy_process_group or
        inside a next run's collectives (both ranks hung). One its caller made stays, with the engine."""
        import torch.distributed as dist

        if self._owns_group and dist.is_initialized():
            self.release_engine()
            gc.collect()
            dist.destroy_process_group()
        self._owns_group = False

    def release_engine(self) -> None:
        """Drop the optimizer and what wraps, shards or splits the model (an override drops its own references to
        them, then calls this); ``model`` stays only where ranks hold it whole without them (ddp)."""
        self.model = self.optimizer = None
        self._released = True

    def engine_held(self, call: str = "unwrapped_model()") -> None:
        """Refuse ``call`` in one line (:class:`UsageError`) when :meth:`release_engine` ran at teardown: every
        member named in :attr:`engine_calls` calls it first (:func:`~deepseek_pro.strategies.released.guard_engine_calls`),
        as does what a strategy serves (the pipeline's ``generate``). The default is for an ``unwrapped_model`` that
        calls it itself, as docs/plugins.md first said to (the base class's wrapping now does)."""
        if self._released:
            raise released_error(self.name, call)

    def weights_finite(self) -> bool:
        """This rank's weights (its shards or stage) finite on every rank: one all-reduce."""
        return self.all_ranks(super().weights_finite())

    def all_ranks(self, flag: bool) -> bool:
        """``flag`` and-ed over every rank (the same answer everywhere)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.comm_device)
        if dist.is_initialized():
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item() > 0)

    # ------------------------------------------------------------------ buffers

    def forward_backward(self, micro_batches: Sequence[Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The base class's forwards and backwards, then rank 0's buffers on every rank
        (``replicates_buffers``)."""
        out = super().forward_backward(micro_batches)
        if self.replicates_buffers:
            self.sync_buffers()
        return out

    def sync_buffers(self, src: int = 0, process_group: Any = None) -> None:
        """Broadcast the model's persistent buffers from rank ``src`` (a global rank) over
        ``process_group`` (default: every rank), one flat tensor per device and dtype; nothing when it has
        none. Non-persistent buffers (cached masks, rotary tables) are not checkpointed and stay
        each rank's own."""
        import torch
        import torch.distributed as dist

        assert self.model is not None, "call setup() first"
        buffers = persistent_buffers(self.model)
        if not buffers or not dist.is_initialized():
            return
        groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for buf in buffers:
            groups.setdefault((buf.device, buf.dtype), []).append(buf)
        with torch.no_grad():
            for group in groups.values():
                flat = torch.cat([b.reshape(-1) for b in group])
                dist.broadcast(flat, src=src, group=process_group)
                for buf, part in zip(group, flat.split([b.numel() for b in group]), strict=True):
                    buf.copy_(part.view(buf.shape))

    # ------------------------------------------------------------------ the data-parallel mean

    def evaluate(self, batch: Any, weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Core's evaluation, its metric names agreed apart from the training steps': names only
        training reports would otherwise reach every evaluation as unmeasured ones."""
        self._agreeing = self._eval_metric_names
        try:
            return super().evaluate(batch, weight)
        finally:
            self._agreeing = self._metric_names

    def reduce_mean(
        self, loss: torch.Tensor, metrics: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean of the loss and metrics (:meth:`MetricSums.packed`) over all ranks, in one
        all-reduce of the names every rank agreed on (:mod:`~deepseek_pro.strategies.metric_names`):
        a name this rank's rows did not return adds 0 to its sum and its measured weight."""
        import torch

        from deepseek.training.step import MetricSums

        names = self._agreeing.agree(MetricSums.names(metrics), None, self.any_rank)
        keys = [MetricSums.TOTAL, *names, *(MetricSums.MEASURED + n for n in names)]
        zero = torch.zeros((), device=self.comm_device)
        values = [loss, *(metrics.get(k, zero) for k in keys)]
        stacked = torch.stack([v.detach().float().reshape(()).to(self.comm_device) for v in values])
        self.all_reduce_tensor_mean(stacked)
        return stacked[0], {k: stacked[i + 1] for i, k in enumerate(keys)}

    def reduce_sum(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each tensor summed over all ranks (each holds its own rows), in one all-reduce of
        float64 (exact for counts)."""
        import torch
        import torch.distributed as dist

        if not dist.is_initialized() or not tensors:
            return tensors
        keys = sorted(tensors)
        flat = torch.cat([tensors[k].detach().to(torch.float64).reshape(-1).to(self.comm_device) for k in keys])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        out, at = {}, 0
        for k in keys:
            n = tensors[k].numel()
            out[k] = flat[at:at + n].reshape(tensors[k].shape).to(tensors[k].device)
            at += n
        return out


guard_engine_calls(DistributedStrategy, DistributedStrategy.engine_calls, inherited=True)


def persistent_buffers(module: nn.Module) -> list[torch.Tensor]:
    """The buffers of ``module`` that its state dict holds (not those registered with
    ``persistent=False``), each once, in the same order on every rank."""
    out: list[torch.Tensor] = []
    seen: set[int] = set()
    for sub in module.modules():
        for name, buf in sub._buffers.items():
            if buf is not None and name not in sub._non_persistent_buffers_set and id(buf) not in seen:
                seen.add(id(buf))
                out.append(buf)
    return out
