"""``tidy.allreduce``: data parallelism written out by hand, the worked example of a third-party
strategy (docs/plugins.md, section 12).

Every process holds the whole model. Each takes its rows of the global batch (the trainer's
``dataset.shard(batch, dp_rank, dp_size)``), runs forward and backward through the base class's
``forward_backward``, and then this strategy averages the gradients over the processes itself,
in one all-reduce of one flat buffer: no ``DistributedDataParallel`` wrapper. After that every
process has the same gradients, so the base class's clipping (the norm over the local,
whole gradients) and optimizer step keep every copy of the model identical.

Who does what:

- the launcher (``deepseek launch`` or torchrun) starts one process per device and sets ``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; core refuses to set this
  strategy up without them (``needs_launcher = True``);
- :meth:`setup_environment` creates the process group (unless the caller already has one, which
  it then leaves alone), picks the device and binds the run's precision to it;
- :meth:`setup` receives the model (built on every rank from the same seed) and the
  ``optimizer_factory`` (``factory(parameters) -> torch.optim.Optimizer``, decay groups made for
  it);
- :meth:`save_checkpoint` is called on every rank with the same folder; rank 0 writes the one
  copy and the others nothing; the trainer waits for every rank (a barrier) before it commits
  the folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
from deepseek.config.validate import positive
from deepseek.training import checkpoint as ckpt
from deepseek.training.launcher_env import LauncherEnv, launcher_env
from deepseek.training.strategy import OptimizerFactory, StepSettings, Strategy
from torch import nn


@dataclass(frozen=True)
class AllReduceOptions:
    """``[strategy]`` keys of ``tidy.allreduce``. ``timeout_s`` and ``backend`` are the names
    ``deepseek launch`` reads: it sets ``timeout_s`` to twice its ``--timeout`` when the config
    leaves the default, and checks ``backend`` against the visible CUDA devices."""

    timeout_s: float = field(default=600.0, metadata={"check": positive, "help": "collective timeout in seconds"})
    """A collective that waits longer than this fails (a dead or hung rank ends the job)."""
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    """``auto``: NCCL when CUDA is available, gloo otherwise."""


class AllReduceStrategy(Strategy):
    """Whole model on every process; gradients averaged with one all-reduce per step."""

    name: ClassVar[str] = "tidy.allreduce"
    Options: ClassVar[type] = AllReduceOptions
    needs_launcher: ClassVar[bool] = True

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        super().__init__(options, precision=precision, host=host)
        self._env = LauncherEnv(0, 1, 0, "", 0)
        self._device = torch.device("cpu")
        self._host_group: Any = None  # gloo beside NCCL, for host-side collectives
        self._owns_group = False
        self._param_names: list[str] = []

    @property
    def rank(self) -> int:
        return self._env.rank

    @property
    def world_size(self) -> int:
        return self._env.world_size

    @property
    def device(self) -> torch.device:
        return self._device

    def _backend(self) -> str:
        if self.options.backend == "auto":
            return "nccl" if torch.cuda.is_available() else "gloo"
        return self.options.backend

    def setup_environment(self) -> None:
        self._env = launcher_env(self.name)
        backend = self._backend()
        if backend == "nccl":
            torch.cuda.set_device(self._env.local_rank)
            self._device = torch.device("cuda", self._env.local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend, rank=self._env.rank, world_size=self._env.world_size,
                                    timeout=timedelta(seconds=self.options.timeout_s))
            self._owns_group = True
        # A stop request (any_rank), barriers and object broadcasts stay on the host: on NCCL
        # they get a gloo group of their own; gloo's default group is already on the host.
        self._host_group = dist.new_group(backend="gloo") if backend == "nccl" else None
        self.precision.bind(self._device)

    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory, settings: StepSettings) -> None:
        self.model = model.to(self._device)
        for tensor in self.model.state_dict().values():  # one starting point, whatever each rank built
            dist.broadcast(tensor, src=0)
        self.optimizer = optimizer_factory(self.model.named_parameters())
        self._param_names = ckpt.optimizer_param_names(self.optimizer, self.model)

    def unwrapped_model(self) -> nn.Module:
        assert self.model is not None
        return self.model

    # ------------------------------------------------------------------ the step

    def forward_backward(self, micro_batches: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The base class's accumulation over this rank's rows, then the gradient average."""
        loss, metrics = super().forward_backward(micro_batches)
        self._average_gradients()
        return loss, metrics

    def _average_gradients(self) -> None:
        """Mean of every gradient over the ranks: each rank's gradient is that of the mean loss
        over its equal share of rows, so their mean is the gradient over the global batch."""
        assert self.model is not None
        params = [p for p in self.model.parameters() if p.requires_grad]
        for p in params:  # a parameter this rank's rows did not reach still takes part
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    def reduce_mean(self, loss: torch.Tensor, metrics: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r"""Mean of the loss and of every metric over the ranks, in one all-reduce. ``metrics`` is
        the base class's packed ``MetricSums``: weighted sums and, under names starting with
        ``"\0"``, their measured weights and the total weight. Its names may differ between ranks
        (a metric only some ranks' rows returned), so the ranks first agree on them: every name
        any rank has, a name this rank lacks adding 0 (nothing summed, no weight measured)."""
        keys = self._agreed_names(metrics)
        zero = torch.zeros((), device=self._device)
        values = (loss, *(metrics.get(k, zero) for k in keys))
        # A rank whose rows returned no metric holds its total weight on the CPU: all on the device.
        stacked = torch.stack([v.detach().float().reshape(()).to(self._device) for v in values])
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked /= self.world_size
        return stacked[0], {k: stacked[i + 1] for i, k in enumerate(keys)}

    def _agreed_names(self, metrics: dict[str, torch.Tensor]) -> list[str]:
        """The union of every rank's metric names, sorted: the same list on every rank. Gathered
        as Python objects on the host group, so it never waits for the device."""
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, sorted(metrics), group=self._host_group)
        return sorted(set().union(*gathered))

    def reduce_sum(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An evaluation's whole-set totals summed over the ranks, each of which evaluated its own
        rows (the base class's default is one rank's: right only for one process)."""
        summed = {}
        for key in sorted(tensors):  # every rank passes the same names, in the same order here
            total = tensors[key].detach().clone()
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
            summed[key] = total
        return summed

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        """Every rank holds the same weights and optimizer state: rank 0 writes them."""
        assert self.model is not None and self.optimizer is not None
        if self.is_global_zero:
            ckpt.save_model_state(Path(directory) / ckpt.MODEL_FILE, self.model.state_dict())
            ckpt.save_optimizer_state(Path(directory) / ckpt.OPTIMIZER_FILE, self.optimizer, self._param_names)
            ckpt.write_trainer_state(directory, trainer_state)

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        """Every rank reads the whole checkpoint (either layout, written by any strategy)."""
        assert self.model is not None and self.optimizer is not None
        weights = ckpt.load_model_state(directory, self.host)  # sharded.json's groups: the run's optimizer
        live = self.model.state_dict()
        ckpt.check_model_fit(weights, {k: tuple(v.shape) for k, v in live.items()}, Path(directory),
                             {k: v.dtype for k, v in live.items()})
        self.model.load_state_dict(weights, strict=True)
        ckpt.load_optimizer_state(directory, self.optimizer, self._param_names, host=self.host)
        return ckpt.read_trainer_state(directory)

    # ------------------------------------------------------------------ host-side collectives

    def barrier(self) -> None:
        dist.barrier(group=self._host_group)

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=src, group=self._host_group)
        return box[0]

    def any_rank(self, flag: bool) -> bool:
        """MAX over the ranks of one CPU number, on the host group: never waits for the device."""
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self._host_group)
        return bool(t.item())

    def teardown(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()  # the host group goes with it
        self._owns_group = False
