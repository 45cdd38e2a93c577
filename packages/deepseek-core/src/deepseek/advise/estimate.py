"""Memory model for training our GPT: bytes per GPU for each parallelism strategy (the model's
shape: :mod:`deepseek.advise.shapes`; the strategy rows: :mod:`deepseek.advise.strategies`).

Everything here is plain arithmetic (no torch). The formulas, byte counts and assumptions are
written out in ``docs/advise.md``; in short, per parameter (``P``) and per GPU (``N`` GPUs):

* model states follow the ZeRO paper (Rajbhandari et al. 2020) with the run's optimizer (``k``:
  its declared :attr:`~deepseek.training.optimizers.OptimizerBuilder.state_bytes`, AdamW 8, SGD
  with momentum 4): mixed precision keeps a 16-bit working copy (2 B), 16-bit gradients (2 B) and
  fp32 master + state (``4 + k``, AdamW's 12 B); fp32 keeps 4 + 4 + ``k`` B. Our engines differ: ``single`` and ``ddp`` run ``torch.autocast`` over fp32
  parameters, so their gradients are fp32 (4 B); ``fsdp`` (FSDP2 with a ``MixedPrecisionPolicy``)
  keeps fp32 shards and fp32 gradients and no persistent 16-bit copy (0 B): its 16-bit weights
  exist only as gathered blocks, counted in its buffers. ``precision.master_weights``
  (``single`` only) keeps bf16 parameters (2 B) and bf16 gradients (2 B) with the fp32 master and
  the state in the optimizer (``4 + k``), plus an fp32 gradient sum (4 B) under gradient accumulation.
* activations per layer are measured-exact for our block (pre-norm, fused qkv, SDPA, GELU):
  ``s*b*(2*r*h + e*(6h + 2f) + 4a + 16)`` bytes with ``e`` the activation width (2 or 4) and
  ``r = 4`` the fp32 LayerNorm inputs; Korthikanti et al.'s ``sbh(34 + 5as/h)`` without the
  ``s^2`` softmax term (SDPA's flash / memory-efficient kernels keep only a log-sum-exp).
* the peak is the larger of the forward/backward phase and the optimizer step (where torch's
  foreach AdamW, used for FSDP's DTensor parameters, adds one fp32 temporary per parameter).
* tensor parallelism (rows ``tp``, ``tp+sp``) splits the blocks' matmuls and their activations
  over the GPUs; embeddings, norms and the head stay whole (``activation_bytes(tp=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

# The shapes live in their own module; importers of estimate keep finding them here.
from deepseek.advise.shapes import (  # noqa: F401
    ModelShape,
    gpt_param_count,
    shape_from_config,
    shape_from_params,
)
from deepseek.advise.strategies import STRATEGIES, TP_MAX_GPUS, StrategySpec, row_offered  # noqa: F401 (TP_MAX_GPUS re-exported)
from deepseek.training.optimizers import can_step

if TYPE_CHECKING:
    from deepseek.advise.engines import Engine

GiB = 1024**3
PrecisionName = Literal["bf16", "fp16", "fp32"]

DEEPSPEED_BUCKET_ELEMENTS = 500_000_000
"""DeepSpeed's default ``reduce_bucket_size`` and ``allgather_bucket_size`` (elements)."""


@dataclass(frozen=True)
class StateBytes:
    """Bytes per parameter of the model states (weights, gradients, optimizer)."""

    weights: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        """Sum of the three."""
        return self.weights + self.gradients + self.optimizer


def paper_bytes(mixed: bool, optimizer_state: float = 8) -> StateBytes:
    """ZeRO paper accounting with an optimizer keeping ``optimizer_state`` bytes per fp32
    parameter element. mixed: 16-bit weights and gradients, fp32 master (4) + the state;
    fp32: weights, gradients, the state."""
    return StateBytes(2, 2, 4 + optimizer_state) if mixed else StateBytes(4, 4, optimizer_state)


PAPER_BYTES: dict[str, StateBytes] = {"mixed": paper_bytes(True), "fp32": paper_bytes(False)}
"""The paper's own numbers, AdamW (``m`` + ``v``, 8 B): mixed 2 + 2 + 12, fp32 4 + 4 + 8."""


@dataclass(frozen=True)
class TrainSetup:
    """What the run looks like: per-GPU micro-batch, sequence, precision, GPU count."""

    seq_len: int
    micro_batch: int
    precision: PrecisionName = "bf16"
    activation_checkpointing: bool = False
    gpus: int = 1
    fp32_residual: bool = True
    """``precision.fp32_residual``: false keeps the residual stream, so each checkpointed block
    input, in the 16-bit compute dtype."""
    master_weights: bool = False
    """``precision.master_weights``: bf16 parameters, fp32 masters in the optimizer (bf16 only,
    on the rows whose engine offers it, :attr:`StrategySpec.master_weights`); the residual stream
    is then bf16."""
    grad_accum: int = 1
    """``train.grad_accum``: micro-batches per optimizer step. Above 1 the gradients live across
    the step's micro-batches (so beside the next one's activations); with master weights the bf16
    gradients are folded into an fp32 sum per parameter instead."""
    optimizer: str = "adamw"
    """The registered optimizer (``[optimizer] name``)."""
    optimizer_state_bytes: float = 8
    """Its declared ``state_bytes``: optimizer state per fp32 parameter element."""
    optimizer_elementwise: bool = True
    """It declares ``elementwise`` (may run on flat partitions: :attr:`StrategySpec.optimizer_parameters`)."""
    optimizer_dtensor: bool = True
    """It declares ``dtensor`` (may step DTensor shards)."""

    @property
    def mixed(self) -> bool:
        """bf16 or fp16 (16-bit compute under autocast)."""
        return self.precision != "fp32"


def state_bytes(spec: StrategySpec, setup: TrainSetup) -> StateBytes:
    """Bytes per parameter this strategy's engine holds (before sharding). The optimizer part is
    the only place the run's optimizer enters: its state, plus the fp32 master under mixed
    precision (DeepSpeed's own master too: it keeps one beside the client optimizer's state)."""
    paper = paper_bytes(setup.mixed, setup.optimizer_state_bytes)
    if setup.master_weights and spec.master_weights:  # bf16 params and grads; master + state (+ sum)
        return StateBytes(2, 2, paper.optimizer + (4 if setup.grad_accum > 1 else 0))
    if setup.mixed and spec.params_cast_on_gather:  # fp32 shards are the masters; no 16-bit copy
        return StateBytes(0, 4, paper.optimizer)
    if setup.mixed and spec.autocast:  # autocast over fp32 parameters: fp32 gradients
        return StateBytes(paper.weights, 4, paper.optimizer)
    return paper


@dataclass(frozen=True)
class Activations:
    """Activation bytes per GPU: ``per_layer`` is one block's saved tensors, ``total`` the peak."""

    per_layer: int
    head: int
    total: int
    formula: str


def activation_bytes(
    shape: ModelShape, setup: TrainSetup, *, residual_in_compute_dtype: bool = False,
    tp: int = 1, sequence_parallel: bool = False,
) -> Activations:
    """Bytes of saved activations for one micro-batch on one GPU (see the module docstring).

    ``residual_in_compute_dtype``: the residual stream is 16-bit (FSDP2's mixed-precision policy),
    so checkpointed block inputs take ``e`` bytes instead of 4. One layer's saved tensors do not
    change: CUDA autocast runs LayerNorm in fp32 and saves an fp32 copy of its input.

    ``tp``: tensor parallelism over ``tp`` GPUs splits q/k/v, the attention output, the FFN
    activations and the log-sum-exp; the norms' inputs, statistics and the residual stream are
    split too with ``sequence_parallel``. The inputs of the column-parallel matmuls (the norms'
    outputs) are whole either way: autograd keeps the all-gathered copy."""
    s, b, t = setup.seq_len, setup.micro_batch, max(1, tp)
    h, f, a, v = shape.d_model, shape.d_ff, shape.n_heads, shape.vocab_size
    e = 2 if setup.mixed else 4  # width of matmul inputs/outputs under autocast
    r = 4  # LayerNorm inputs are fp32 under autocast
    norms = 2 * r * h + 16  # the two LayerNorm inputs, their mean and rstd
    split = e * (4 * h + 2 * f) + 4 * a  # q, k, v, attention output, FFN, log-sum-exp
    seq = t if sequence_parallel else 1
    per_layer = s * b * (norms / seq + e * 2 * h + split / t)
    # Final LayerNorm input + LM-head input, fp32 logits and their log-softmax for the loss.
    head = s * b * (r * h / seq + e * h + 8 * v + 8)
    if setup.activation_checkpointing:
        x = e if residual_in_compute_dtype else 4  # width of the residual stream
        total = shape.n_layers * s * b * x * h / seq + per_layer + head
        formula = f"L*s*b*h*{x}{'/t' if seq > 1 else ''} (block inputs) + one recomputed block + head"
    else:
        total = shape.n_layers * per_layer + head
        if t == 1:
            formula = f"L*s*b*(8h + {e}*(6h + 2f) + 4a + 16) + head"
        else:
            norm_part = "(8h + 16)/t" if seq > 1 else "8h + 16"
            formula = f"L*s*b*({norm_part} + {2 * e}h + ({e}*(4h + 2f) + 4a)/t) + head, t = {t}"
    return Activations(per_layer=int(per_layer), head=int(head), total=int(total), formula=formula)


@dataclass(frozen=True)
class Estimate:
    """Per-GPU memory of one strategy, in bytes; ``host`` is per node (all local GPUs)."""

    key: str
    label: str
    engine: str | None
    edition: str | None
    weights: int
    gradients: int
    optimizer: int
    activations: int
    buffers: int
    overhead: int
    host: int
    bytes_per_param: dict[str, float] = field(default_factory=dict)
    fits: bool = False
    host_fits: bool = True
    applicable: bool = True
    grads_persist: bool = True
    backward_buffers: bool = False
    step_temp: int = 0
    """Optimizer-step temporaries on the GPU (foreach AdamW's ``sqrt(v)``)."""

    @property
    def total(self) -> int:
        """Peak on one GPU, the larger of two phases on top of weights, optimizer state and
        overhead. Forward/backward: buffers, gradients and activations; gradients freed between
        steps (set_to_none) grow in backward while activations are freed, so only the larger of
        the two counts, else both; DeepSpeed's reduce bucket lives only in backward, beside the
        gradients. Optimizer step: gradients and the step's temporaries."""
        base = self.weights + self.optimizer + self.overhead
        if self.grads_persist:
            train = self.buffers + self.gradients + self.activations
        elif self.backward_buffers:
            train = max(self.activations, self.buffers + self.gradients)
        else:
            train = self.buffers + max(self.gradients, self.activations)
        return base + max(train, self.gradients + self.step_temp)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with ``total``."""
        d = asdict(self)
        d["total"] = self.total
        return d


def _buffers(spec: StrategySpec, shape: ModelShape, per: StateBytes, setup: TrainSetup) -> int:
    p = shape.n_params
    if spec.buffers == "deepspeed":  # one reduce bucket and one all-gather bucket
        return int(2 * min(p, DEEPSPEED_BUCKET_ELEMENTS) * per.weights)
    if spec.buffers == "gather":
        c = 2 if setup.mixed else 4  # gathered parameters and autograd's unsharded gradients
        # Per block parameter: current + prefetched gathered block, one block's unsharded
        # gradients, and its fp32 reduce-scatter input (kept until the next block reduces).
        # Per root parameter (embeddings; gathered from forward to the end of backward): the
        # gathered copy and its gradients or fp32 reduce-scatter input.
        return int((3 * c + 4) * shape.layer_params + (c + 4) * shape.embedding_params)
    return 0


def estimate_strategy(
    spec: StrategySpec, shape: ModelShape, setup: TrainSetup, *, overhead: int,
    usable_gpu: int | None = None, host_memory: int | None = None, engine: Engine | None = None,
) -> Estimate:
    """Per-GPU bytes of ``spec`` for ``shape`` and ``setup``; ``fits`` against ``usable_gpu``;
    ``engine``: the strategy realising the row (``None``: not offered)."""
    n = max(1, setup.gpus) if spec.key not in ("single", "single+offload") else 1
    p = shape.n_params
    tp = n if spec.tensor_parallel != "none" else 1
    if tp > 1:  # each GPU holds 1/tp of the split parameters and all of the rest
        p = p * (1 - shape.tp_split_share + shape.tp_split_share / tp)
    per = state_bytes(spec, setup)
    w = per.weights * p / (n if spec.shard_weights else 1)
    g = per.gradients * p / (n if spec.shard_grads else 1)
    o = per.optimizer * p / (n if spec.shard_optimizer else 1)
    temp = 4 * p / (n if spec.shard_optimizer else 1) if spec.foreach_step else 0.0
    host_per_gpu = 0.0
    if spec.offload_optimizer:
        # fp32 grads for the step; the step itself, with its temporaries, runs on the host
        host_per_gpu += o + 4 * p / (n if spec.shard_optimizer else 1) + temp
        o = temp = 0.0
        if spec.shard_grads:  # gradients stream to the host as they are reduced
            g = 0.0
    if spec.offload_params:
        host_per_gpu += w
        w = 0.0
    master = setup.master_weights and spec.master_weights  # bf16 parameters: a bf16 residual stream
    residual16 = spec.params_cast_on_gather or (setup.mixed and not setup.fp32_residual) or master
    # Accumulating micro-batches keeps the gradients from one backward to the next forward, except
    # under master weights: each bf16 gradient is folded into the fp32 sum (optimizer state) at once.
    accumulating = setup.grad_accum > 1 and not master
    act = activation_bytes(shape, setup, residual_in_compute_dtype=residual16, tp=tp,
                           sequence_parallel=spec.tensor_parallel == "tp+sp").total
    est = Estimate(
        key=spec.key, label=spec.label, engine=engine.strategy if engine else None,
        edition=engine.edition if engine else None,
        weights=int(w), gradients=int(g), optimizer=int(o), activations=act,
        buffers=_buffers(spec, shape, per, setup), overhead=overhead,
        host=int(host_per_gpu * n), bytes_per_param=asdict(per),
        applicable=engine is not None and row_offered(spec, setup.gpus, shape)
        and can_step(spec.optimizer_parameters, elementwise=setup.optimizer_elementwise,
                     dtensor=setup.optimizer_dtensor),
        grads_persist=spec.grads_persist or accumulating,
        backward_buffers=spec.backward_buffers,
        step_temp=int(temp),
    )
    fits = usable_gpu is not None and est.total <= usable_gpu
    host_fits = host_memory is None or est.host <= host_memory
    return _replace(est, fits=fits and host_fits, host_fits=host_fits)


def _replace(est: Estimate, **changes: Any) -> Estimate:
    from dataclasses import replace

    return replace(est, **changes)


def estimate_all(
    shape: ModelShape, setup: TrainSetup, *, gpu_memory: int, headroom: float = 0.10,
    overhead: int = GiB, host_memory: int | None = None, engines: Mapping[str, Engine] | None = None,
) -> list[Estimate]:
    """Every row of :data:`STRATEGIES`; a row fits when its total is within ``gpu_memory``
    minus ``headroom`` (fraction kept free for allocator fragmentation) and its host part
    within ``host_memory``. ``engines``: row -> realising strategy (default: what the strategies
    registered on the process's plugin host declare, :func:`deepseek.advise.engines.row_engines`).
    With ``setup.master_weights`` only the rows whose engine offers master weights."""
    from deepseek.advise.engines import row_engines

    engines = row_engines() if engines is None else engines
    usable = int(gpu_memory * (1 - headroom))
    return [
        estimate_strategy(spec, shape, setup, overhead=overhead, usable_gpu=usable, host_memory=host_memory,
                          engine=engines.get(spec.key))
        for spec in STRATEGIES
        if spec.master_weights or not setup.master_weights
    ]
