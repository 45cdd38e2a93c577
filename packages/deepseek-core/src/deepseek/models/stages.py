"""Pipeline-parallel stages of a :class:`~deepseek.models.gpt.GPT`.

``split_stages(model, n)`` returns ``n`` modules that, composed, compute ``model(idx)``:

- stage 0 takes token ids ``(B, T)`` and holds ``wte``, ``wpe`` and the first blocks;
- middle stages map hidden states ``(B, T, D)`` to hidden states;
- the last stage holds the last blocks, ``ln_f`` and ``lm_head`` and returns logits ``(B, T, V)``.

Blocks are balanced by count (sizes differ by at most one, the extra blocks going to the
middle stages first). Stages hold the model's own modules (no copies), and parameter names
inside a stage equal the names in the full model (``blocks.7.attn.qkv.weight``), so the union of
the stages' state dicts is the model's state dict.

Tied embeddings: with ``tie_embeddings`` and ``n > 1`` the input embedding lives on the first
stage and the output head on the last, usually on different devices, so one tensor cannot serve
both. The last stage then gets its own ``lm_head.weight``, a *copy* of ``wte.weight`` made at
split time. The pipeline strategy must keep the two equal by summing their gradients before each
optimizer step (Megatron's "embedding group": all-reduce between the first and last stage) —
:func:`tied_parameters` returns the pair. With identical gradients and optimizer states the two
copies stay bit-identical. When saving, ``lm_head.weight`` equals ``wte.weight`` and may be
dropped; the full model re-ties on load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from deepseek.errors import UsageError
from deepseek.models.layers import KVCache, residual_cast, run_blocks
from deepseek.models.protocol import TrainableModel

if TYPE_CHECKING:
    from deepseek.models.gpt import GPT


class GPTStage(TrainableModel):
    """One pipeline stage: optional embeddings, a run of blocks, optional final norm + head.
    Offers per-block structure (``hybrid`` shards each block), activation checkpointing and
    KV-cache decoding of its own blocks (``generate --strategy pipeline``)."""

    def __init__(
        self,
        model: GPT,
        block_ids: range,
        *,
        first: bool,
        last: bool,
        lm_head: nn.Linear | None = None,
    ) -> None:
        super().__init__()
        self.config = model.config
        self.first, self.last = first, last
        self.block_ids = block_ids
        if first:
            self.wte, self.wpe, self.drop = model.wte, model.wpe, model.drop
        # A ModuleDict keyed by the model's block index keeps parameter names identical.
        self.blocks = nn.ModuleDict({str(i): model.blocks[i] for i in block_ids})
        if last:
            self.ln_f = model.ln_f
            self.lm_head = lm_head if lm_head is not None else model.lm_head
        self.activation_checkpointing = model.activation_checkpointing
        self.fp32_residual = model.fp32_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids (first stage) or hidden states in; hidden states or logits (last) out."""
        if self.first:
            pos = torch.arange(x.size(1), device=x.device)
            x = residual_cast(self.drop(self.wte(x) + self.wpe(pos)), self.fp32_residual)
        x = run_blocks(list(self.blocks.values()), x, checkpointing=self.activation_checkpointing)
        if self.last:
            x = self.lm_head(self.ln_f(x))
        return x

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """A KV cache for this stage's blocks (layer ``i`` of the cache is its ``i``-th block)."""
        c = self.config
        first = next(iter(self.blocks.values()))
        p = first.attn.qkv.weight
        heads = p.shape[0] // (3 * c.head_dim)
        return KVCache(len(self.blocks), batch, heads, max_len, c.head_dim, device=p.device, dtype=p.dtype)

    def forward_cached(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Token ids (first stage) or hidden states following the ``cache.length`` cached
        positions in; hidden states or logits (last stage) out."""
        if self.first:
            x = self.drop(self.wte(x) + self.wpe(cache.positions(x.size(1), x.device)))
        for i, block in enumerate(self.blocks.values()):
            x = block(x, cache=cache, layer=i)
        cache.advance(x.size(1))
        return self.lm_head(self.ln_f(x)) if self.last else x

    def decode_window(self) -> int:
        """The model's context length, ``max_seq_len``."""
        return self.config.max_seq_len

    def block_modules(self) -> list[nn.Module]:
        """This stage's blocks, in order."""
        return list(self.blocks.values())

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute this stage's block activations in backward."""
        self.activation_checkpointing = bool(enabled)


def stage_sizes(n_layers: int, n: int) -> list[int]:
    """Blocks per stage: as even as possible; extra blocks go to the middle stages, then the first."""
    base, extra = divmod(n_layers, n)
    sizes = [base] * n
    order = sorted(range(n), key=lambda i: (i in (0, n - 1), abs(i - (n - 1) / 2)))
    for i in order[:extra]:
        sizes[i] += 1
    return sizes


def split_stages(model: GPT, n: int) -> list[GPTStage]:
    """Split ``model`` (a GPT) into ``n`` stages; see the module docstring for tying."""
    n_layers = len(model.blocks)
    if not isinstance(n, int) or not 1 <= n <= n_layers:
        raise UsageError(
            f"pipeline stages: cannot split a {n_layers}-layer model into {n!r} stages; use 1 to "
            f"{n_layers} stages (each stage needs at least one block)"
        )
    head = model.lm_head
    if n > 1 and model.config.tie_embeddings:
        head = nn.Linear(model.config.d_model, model.config.vocab_size, bias=False, device=head.weight.device)
        head.weight = nn.Parameter(model.wte.weight.detach().clone(), requires_grad=model.wte.weight.requires_grad)
    stages, start = [], 0
    for i, size in enumerate(stage_sizes(n_layers, n)):
        first, last = i == 0, i == n - 1
        stages.append(
            GPTStage(model, range(start, start + size), first=first, last=last, lm_head=head if last else None)
        )
        start += size
    return stages


def tied_parameters(stages: list[GPTStage]) -> tuple[nn.Parameter, nn.Parameter] | None:
    """``(first.wte.weight, last.lm_head.weight)`` when they are separate copies that the pipeline
    strategy must keep in sync, else ``None`` (untied model, or one stage holding both)."""
    first, last = stages[0], stages[-1]
    if not first.config.tie_embeddings or len(stages) == 1:
        return None
    return first.wte.weight, last.lm_head.weight
