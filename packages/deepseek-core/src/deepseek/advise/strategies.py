"""The strategy rows the advisor estimates: how each places the model states (sharded over the
GPUs, moved to the host, tensor parallel), and for which GPU counts a row is offered.

The bytes each row needs are :mod:`deepseek.advise.estimate`'s; which registered strategy
realises a row is :mod:`deepseek.advise.engines`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from deepseek.advise.shapes import ModelShape


@dataclass(frozen=True)
class StrategySpec:
    """How a strategy places model states: sharded over ``N`` GPUs or moved to the host."""

    key: str
    label: str
    shard_weights: bool = False
    shard_grads: bool = False
    shard_optimizer: bool = False
    offload_optimizer: bool = False
    offload_params: bool = False
    autocast: bool = False
    grads_persist: bool = False
    """Gradient memory stays allocated across steps (DDP's buckets); else
    ``zero_grad(set_to_none=True)`` frees it, so it never coexists with the forward's activations."""
    backward_buffers: bool = False
    """DeepSpeed ZeRO-1/2: gradients go through the reduce bucket into partitions that exist from
    the first backward hook until the step ends, so bucket and gradients never coexist with the
    forward's peak activations (measured on 2 x H200, docs/advise.md)."""
    buffers: Literal["none", "deepspeed", "gather"] = "none"
    params_cast_on_gather: bool = False
    """FSDP2 ``MixedPrecisionPolicy(param_dtype=compute)``: parameters are all-gathered in the
    compute dtype and floating-point forward inputs are cast to it. No persistent 16-bit weight
    copy (the fp32 shard is the master, in the optimizer's ``4 + k`` B), and the residual stream, so
    each checkpointed block input, is 16-bit."""
    foreach_step: bool = False
    """AdamW runs torch's foreach kernels on the GPU (our optimizer factory keeps the fused one off
    for DTensor parameters): the step holds one fp32 temporary, ``sqrt(v)``, per local parameter."""
    master_weights: bool = False
    """The row's engine can keep bf16 parameters with fp32 master weights in its optimizer
    (``precision.master_weights``: a strategy with ``supports_master_weights``, core's ``single``)."""
    tensor_parallel: Literal["none", "tp", "tp+sp"] = "none"
    """Megatron-style tensor parallelism over the N GPUs (deepseek-pro's ``tp``): the blocks'
    matmul weights, their gradients and optimizer state, and the activations between the split
    layers are 1/N per GPU; embeddings, norms and the head are whole on each, and every GPU sees
    the same rows. ``tp+sp`` (sequence parallel) splits the norms' activations too."""

    @property
    def optimizer_parameters(self) -> str:
        """What the row's engine hands its optimizer, as a strategy's ``optimizer_parameters``
        says it: ``flat`` partitions (DeepSpeed ZeRO-1/2's buffers), ``dtensor`` shards (FSDP2,
        tensor parallel) or ``whole`` parameters."""
        if self.buffers == "deepspeed":
            return "flat"
        return "dtensor" if self.params_cast_on_gather or self.tensor_parallel != "none" else "whole"


STRATEGIES: tuple[StrategySpec, ...] = (
    StrategySpec("single", "single", autocast=True, master_weights=True),
    StrategySpec("single+offload", "single+offload", shard_grads=True,
                 shard_optimizer=True, offload_optimizer=True, backward_buffers=True, buffers="deepspeed"),
    StrategySpec("ddp", "ddp", autocast=True, grads_persist=True),
    StrategySpec("ddp+offload", "ddp+offload", offload_optimizer=True, autocast=True, grads_persist=True),
    StrategySpec("zero1", "zero1", shard_optimizer=True, backward_buffers=True,
                 buffers="deepspeed"),
    StrategySpec("zero1+offload", "zero1+offload", shard_optimizer=True,
                 offload_optimizer=True, backward_buffers=True, buffers="deepspeed"),
    StrategySpec("zero2", "zero2", shard_grads=True, shard_optimizer=True,
                 backward_buffers=True, buffers="deepspeed"),
    StrategySpec("zero2+offload", "zero2+offload", shard_grads=True,
                 shard_optimizer=True, offload_optimizer=True, backward_buffers=True, buffers="deepspeed"),
    StrategySpec("zero3", "zero3", shard_weights=True, shard_grads=True,
                 shard_optimizer=True, autocast=True, buffers="gather", params_cast_on_gather=True,
                 foreach_step=True),
    StrategySpec("zero3+offload", "zero3+offload", shard_weights=True, shard_grads=True,
                 shard_optimizer=True, offload_optimizer=True, offload_params=True, autocast=True, buffers="gather", params_cast_on_gather=True,
                 foreach_step=True),
    StrategySpec("tp", "tp", autocast=True, foreach_step=True, tensor_parallel="tp"),
    StrategySpec("tp+sp", "tp+sp", autocast=True, foreach_step=True, tensor_parallel="tp+sp"),
)
"""Every row the advisor estimates. Which registered strategy realises a row is what the strategies
declare (:func:`deepseek.advise.engines.row_engines`); a row none declares (``ddp+offload``) is
estimated for comparison, not offered."""


_ONE_GPU = ("single", "single+offload", "zero3+offload")


TP_MAX_GPUS = 8
"""Tensor parallelism is offered within one node: its all-reduces per layer need NVLink."""


def row_offered(spec: StrategySpec, gpus: int, shape: ModelShape | None = None) -> bool:
    """Whether the row is offered for this many GPUs (0 = CPU only: ``single``); tensor
    parallelism within one node and when the heads and FFN units split evenly."""
    if gpus == 0:
        return spec.key == "single"
    if spec.tensor_parallel != "none":
        fits = shape is None or (shape.n_heads % gpus == 0 and shape.d_ff % gpus == 0)
        return 1 < gpus <= TP_MAX_GPUS and fits
    return gpus > 1 or spec.key in _ONE_GPU
