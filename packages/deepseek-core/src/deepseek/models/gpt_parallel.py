"""The GPT's tensor-parallel plan (Megatron-LM's split of each block), which
:meth:`deepseek.models.gpt.GPT.tensor_parallel_plan` returns: the fused ``qkv`` and the MLP's ``fc``
column-wise, ``attn.proj`` and ``mlp.proj`` row-wise; with sequence parallelism the block norms
and the residual stream between the sharded layers hold ``seq / tp_size`` positions per rank."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepseek.errors import ConfigError
from deepseek.models.protocol import TensorParallelPlan

if TYPE_CHECKING:
    from deepseek.models.gpt import GPTConfig


def tensor_parallel_plan(c: GPTConfig, tp_size: int, *, sequence_parallel: bool) -> TensorParallelPlan:
    """The plan of a GPT of config ``c`` over ``tp_size`` ranks (``model.n_heads`` and
    ``model.d_ff`` must divide: one line naming the key otherwise)."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInput,
        RowwiseParallel,
        SequenceParallel,
    )

    if c.n_heads % tp_size:
        raise ConfigError(
            f"model.n_heads: {c.n_heads} attention heads do not split over {tp_size} tensor-parallel "
            f"ranks; pick n_heads divisible by {tp_size} or launch a divisor of {c.n_heads} processes"
        )
    if c.d_ff % tp_size:  # type: ignore[operator]
        raise ConfigError(
            f"model.d_ff: {c.d_ff} MLP units do not split over {tp_size} tensor-parallel ranks; "
            f"pick d_ff divisible by {tp_size}"
        )
    fused = {"blocks.*.attn.qkv.weight": 3, "blocks.*.attn.qkv.bias": 3}
    if not sequence_parallel:
        return TensorParallelPlan(styles={
            "blocks.*.attn.qkv": ColwiseParallel(),
            "blocks.*.attn.proj": RowwiseParallel(),
            "blocks.*.mlp.fc": ColwiseParallel(),
            "blocks.*.mlp.proj": RowwiseParallel(),
        }, fused_rows=fused)
    seq = Shard(1)
    return TensorParallelPlan(styles={
        # The embeddings are whole on every rank: each keeps its own positions from here on.
        "blocks.0": PrepareModuleInput(input_layouts=(Replicate(),), desired_input_layouts=(seq,),
                                       use_local_output=True),
        "blocks.*.ln1": SequenceParallel(),
        "blocks.*.attn.qkv": ColwiseParallel(input_layouts=seq),
        "blocks.*.attn.proj": RowwiseParallel(output_layouts=seq),
        "blocks.*.ln2": SequenceParallel(),
        "blocks.*.mlp.fc": ColwiseParallel(input_layouts=seq),
        "blocks.*.mlp.proj": RowwiseParallel(output_layouts=seq),
        "ln_f": SequenceParallel(),
        # All positions again for the (whole, tied) head: every rank computes the full logits.
        "lm_head": PrepareModuleInput(input_layouts=(seq,), desired_input_layouts=(Replicate(),),
                                      use_local_output=True),
    }, fused_rows=fused)
