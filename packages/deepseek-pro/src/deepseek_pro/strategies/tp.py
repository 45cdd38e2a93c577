"""``tp``: tensor parallelism on PyTorch's DTensor API — every rank holds a slice of each layer.

The model says how it splits (capability ``tensor_parallel``, its
:meth:`~deepseek.models.protocol.TrainableModel.tensor_parallel_plan`): the strategy builds a 1-D
DeviceMesh ``("tp",)`` over all ranks and hands the plan's styles to
``torch.distributed.tensor.parallel.parallelize_module``. For the GPT that is Megatron-LM's split:
attention heads and MLP units column-wise, the output projections row-wise (one all-reduce per
sub-layer forward and one backward; with ``sequence_parallel`` a reduce-scatter + all-gather pair
instead, and the norms and the residual stream hold ``seq / tp`` positions per rank). Every
collective is DTensor's; the strategy writes none.

Every rank sees the same rows of the global batch (``dp_size = 1``): one model replica spread
over the ranks. Parameters the plan does not name (embeddings, the tied head, the final norm)
stay whole on every rank and get the same gradients everywhere. Fused projections (``qkv``) are
reordered so each rank holds its own heads' q, k and v (:mod:`deepseek_pro.strategies.tp_layout`);
checkpoints are written in the canonical full layout (gathered with
``torch.distributed.checkpoint.state_dict`` and put back in canonical row order), so they load
under every other strategy and ``tp`` loads theirs (full or sharded).

Clipping: the total norm over sharded (DTensor) and whole gradients, each counted once.
Mixed precision: autocast (bf16); fp16 loss scaling is refused (it would check sharded gradients
per rank). ``async_tp`` (torch's micro-pipelined TP, symmetric memory) needs CUDA and
``torch.compile``; it is refused on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from deepseek.errors import ConfigError, UsageError
from deepseek.models.capabilities import model_capabilities
from deepseek.training import clip
from deepseek.training.strategy import OptimizerFactory, StepSettings
from deepseek_pro import checkpoint as pro_ckpt
from deepseek_pro.strategies.base import DistributedOptions, DistributedStrategy
from deepseek_pro.strategies.released import refuse_served
from deepseek_pro.strategies.tp_layout import FusedRows
from deepseek_pro.strategies.twin import materialize, meta_twin

if TYPE_CHECKING:
    from deepseek.config.schema import Config

_FP16 = ("precision.dtype: strategy 'tp' runs fp32 or bf16 (fp16 loss scaling would check each "
         "rank's gradient shards alone); use precision.dtype = 'bf16'")


@dataclass(frozen=True)
class TPOptions(DistributedOptions):
    """``[strategy]`` keys of ``tp``."""

    sequence_parallel: bool = False
    """Norms, dropout and the residual stream between the sharded layers hold ``seq / tp``
    positions per rank (less activation memory; ``data.seq_len`` must divide by the rank count)."""
    async_tp: bool = False
    """torch's asynchronous TP (collectives overlapped with the matmuls through symmetric
    memory): CUDA with ``train.compile`` and ``sequence_parallel`` only."""


def _check_options(config: Any, world_size: int | None) -> None:
    o = config.strategy.options
    if config.precision.dtype == "fp16":
        raise ConfigError(_FP16)
    if o.async_tp and not (o.sequence_parallel and config.train.compile):
        raise ConfigError("strategy.async_tp: asynchronous TP needs strategy.sequence_parallel = true and "
                          "train.compile = true; set both, or async_tp = false")
    if world_size and o.sequence_parallel:
        check_sequence_split(config, world_size)


def check_sequence_split(config: Any, ranks: int) -> None:
    """ConfigError when a packed token dataset's ``seq_len`` does not split over ``ranks``
    sequence-parallel ranks (other datasets' batches are checked as they come)."""
    from deepseek.data.packed import TokenOptions

    data = config.data.options
    if isinstance(data, TokenOptions) and data.seq_len % ranks:
        raise ConfigError(_sequence_problem("data.seq_len", data.seq_len, ranks))


def check_batch_sequence(batch: Any, ranks: int) -> None:
    """Under sequence parallelism the sequences (dim 1 of the batch's tensors, which the plan
    shards) must split evenly over the ranks: one line instead of a collective's crash."""
    from torch.utils import _pytree as pytree

    for t in pytree.tree_leaves(batch):
        if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.size(1) % ranks:
            raise UsageError(_sequence_problem("data", t.size(1), ranks))


def _sequence_problem(where: str, positions: int, ranks: int) -> str:
    return (f"{where}: {positions} positions do not split over {ranks} ranks for strategy.sequence_parallel; "
            f"pick a sequence length divisible by {ranks} or sequence_parallel = false")


class TPStrategy(DistributedStrategy):
    """Tensor parallelism over every rank of the job (``tp = world_size``, ``dp_size = 1``)."""

    optimizer_parameters = "dtensor"

    name: ClassVar[str] = "tp"
    Options: ClassVar[type] = TPOptions

    def __init__(self, options: Any = None, *, precision: Any, host: Any = None) -> None:
        super().__init__(options, precision=precision, host=host)
        self.mesh: Any = None
        self.fused: FusedRows | None = None
        self._template: nn.Module | None = None
        self._served: nn.Module | None = None  # setup_inference's model: refuses its calls after teardown

    # ------------------------------------------------------------------ rules

    @classmethod
    def memory_row(cls, options: Any) -> str | None:
        return "tp+sp" if options.sequence_parallel else "tp"

    @classmethod
    def required_capabilities(cls, config: Config) -> dict[str, str]:
        return {"tensor_parallel": f"strategy {config.strategy.name!r}"}

    @classmethod
    def check_config(cls, config: Config) -> None:
        """fp16, and ``async_tp`` without its prerequisites, are refused."""
        _check_options(config, None)

    @classmethod
    def check_launch(cls, config: Config, world_size: int, model: nn.Module) -> None:
        """The model's shape must split over ``world_size`` ranks (its plan says so), and the
        sequence too with ``sequence_parallel``."""
        _check_options(config, world_size)
        if "tensor_parallel" in model_capabilities(model):
            model.tensor_parallel_plan(world_size, sequence_parallel=config.strategy.options.sequence_parallel)  # type: ignore[operator]

    @classmethod
    def data_parallel_size(cls, config: Config, world_size: int) -> int:
        """Every rank sees the whole batch."""
        return 1

    # ------------------------------------------------------------------ topology

    @property
    def dp_rank(self) -> int:
        return 0

    @property
    def dp_size(self) -> int:
        return 1

    def setup_environment(self) -> None:
        super().setup_environment()
        problem = None
        if self.precision.name == "fp16":
            problem = _FP16
        elif self.options.async_tp and self.device.type != "cuda":
            problem = (f"strategy.async_tp: asynchronous TP needs CUDA devices (symmetric memory), this job "
                       f"runs on {self.device.type}; set async_tp = false")
        if problem:
            self.teardown()
            raise UsageError(problem)

    def setup(self, model: nn.Module, optimizer_factory: OptimizerFactory, settings: StepSettings) -> None:
        self._template = meta_twin(model)
        self.model = self._parallelize(model, sequence_parallel=self.options.sequence_parallel)
        if self.options.async_tp:  # torchtitan's switch: inductor fuses the collectives into the matmuls
            import torch._inductor.config as inductor_config
            from torch.distributed._symmetric_memory import enable_symm_mem_for_group

            inductor_config._micro_pipeline_tp = True
            enable_symm_mem_for_group(self.mesh.get_group().group_name)
        self.optimizer = optimizer_factory(self.model.named_parameters())

    def setup_inference(self, model: nn.Module, settings: StepSettings) -> nn.Module:
        """The trained model split over the ranks like for training, without sequence
        parallelism (a decode step has one position); the GPT's KV cache then holds each rank's
        own heads. After teardown its calls refuse in one line (:meth:`release_engine`)."""
        self._served = self._parallelize(model, sequence_parallel=False).eval()
        return self._served

    def _parallelize(self, model: nn.Module, *, sequence_parallel: bool) -> nn.Module:
        """``model`` on this rank's device, its fused rows reordered, split by its plan over the
        ``tp`` mesh (``parallelize_module``)."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor.parallel import parallelize_module

        if "tensor_parallel" not in model_capabilities(model):  # build_model refuses it first in training
            raise UsageError(
                f"strategy 'tp': the model ({type(model).__name__}) offers no tensor_parallel_plan; use a "
                "model that does (the GPT presets) or another strategy"
            )
        plan = model.tensor_parallel_plan(self.world_size, sequence_parallel=sequence_parallel)  # type: ignore[operator]
        self.mesh = init_device_mesh(self.device.type, (self.world_size,), mesh_dim_names=("tp",))["tp"]
        model = model.to(self.device)
        self.fused = FusedRows(model, plan.fused_rows, self.world_size)
        self.fused.reorder_model(model)
        return parallelize_module(model, self.mesh, dict(plan.styles))

    # ------------------------------------------------------------------ the step

    def to_device(self, batch: Any) -> Any:
        self._check_sequence(batch)
        return super().to_device(batch)

    def evaluate(self, batch: Any, weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self._check_sequence(batch)
        return super().evaluate(batch, weight)

    def _check_sequence(self, batch: Any) -> None:
        if self.options.sequence_parallel:
            check_batch_sequence(batch, self.world_size)

    def reduce_mean(
        self, loss: torch.Tensor, metrics: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every rank computed the loss of the same rows: nothing to average."""
        return loss.detach().float(), {k: v.detach().float() for k, v in metrics.items()}

    def reduce_sum(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every rank evaluated the same rows: its totals are the whole batch's already."""
        return tensors

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """The global norm over the sharded gradients (a DTensor reduction over the ranks) and
        the whole ones (equal on every rank, counted once), then one scale of every gradient."""
        from torch.distributed.tensor import DTensor

        assert self.model is not None
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros(())
        squares = []
        for group in ([g for g in grads if isinstance(g, DTensor)], [g for g in grads if not isinstance(g, DTensor)]):
            if group:
                norm = torch.nn.utils.get_total_norm(group)
                norm = norm.full_tensor() if isinstance(norm, DTensor) else norm
                squares.append(norm.float().square())
        total = torch.stack(squares).sum().sqrt()
        if max_norm > 0:
            coef = torch.clamp(max_norm / (total + clip.EPS), max=1.0)
            for g in grads:
                (g.to_local() if isinstance(g, DTensor) else g).mul_(coef.to(g.device))
        return total

    # ------------------------------------------------------------------ models and checkpoints

    def release_engine(self) -> None:
        """The parallelized module (DTensor parameters over the mesh) goes with the mesh; the one served for
        ``eval`` / ``generate``, which its caller holds, refuses its calls from now on (``refuse_served``: it
        computed on one rank without a word, and on more needed the destroyed group)."""
        super().release_engine()
        if self._served is not None:
            refuse_served(self._served, self.name)
        self.mesh = self._served = None

    def unwrapped_model(self) -> nn.Module:
        """A plain CPU copy with the full weights in canonical order (a collective: call it on
        every rank)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        assert self.model is not None and self._template is not None and self.fused is not None
        full = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True))
        full, _ = self.fused.canonical({k: v.detach().cpu() for k, v in full.items()})
        plain = materialize(self._template, "cpu")
        plain.load_state_dict(full)
        return plain

    def save_checkpoint(self, directory: Path, trainer_state: dict[str, Any]) -> None:
        assert self.model is not None and self.optimizer is not None
        pro_ckpt.save_checkpoint(self, self.model, self.optimizer, Path(directory), trainer_state,
                                 sharded=False, fused=self.fused)

    def load_checkpoint(self, directory: Path) -> dict[str, Any]:
        assert self.model is not None and self.optimizer is not None
        return pro_ckpt.load_checkpoint(self, self.model, self.optimizer, Path(directory), fused=self.fused)
