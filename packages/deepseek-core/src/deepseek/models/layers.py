"""Transformer building blocks shared by the GPT decoder and the text encoder.

A :class:`Block` is pre-norm: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``. Attention uses one
fused ``qkv`` projection and :func:`torch.nn.functional.scaled_dot_product_attention`. Forward
passes without a KV cache have no data-dependent Python control flow, so the blocks trace with
``torch.fx`` and ``torch.export`` and compile with ``torch.compile``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Pre-allocated keys and values of every layer for incremental decoding.

    ``keys[i]`` / ``values[i]`` have shape ``(batch, heads, max_len, head_dim)``; ``length`` is the
    number of positions filled so far (the same for every layer), kept on the host: each call
    reads and writes exactly the filled positions. :class:`KVCursor` serves the same buffers with
    the position on the device instead (one shape for every step: a CUDA graph replays it).

    A module that decodes with a cache calls :meth:`positions` for the new tokens' positions,
    :meth:`attend` in each layer and :meth:`advance` once at the end; both kinds of cache offer
    these three.
    """

    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_heads: int,
        max_len: int,
        head_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        shape = (batch, n_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.max_len = max_len
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``/``v`` (``(B, H, T, hd)``) after the filled positions of ``layer`` and return
        all keys and values so far. :meth:`advance` moves ``length`` once every layer is done."""
        start, end = self.length, self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} positions > capacity {self.max_len}")
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def positions(self, t: int, device: torch.device) -> torch.Tensor:
        """Positions ``length .. length + t - 1`` of ``t`` new tokens."""
        return torch.arange(self.length, self.length + t, device=device)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int, p: float) -> torch.Tensor:
        """Causal attention of new queries ``q`` over the cached and the new keys of ``layer``
        (``k``/``v`` are stored first); ``p``: attention dropout."""
        past, t = self.length, q.size(2)
        k_all, v_all = self.update(layer, k, v)
        if past == 0:
            return F.scaled_dot_product_attention(q, k_all, v_all, dropout_p=p, is_causal=True)
        if t == 1:
            return F.scaled_dot_product_attention(q, k_all, v_all, dropout_p=p)
        # Several new tokens after a prefix: query i sees keys 0 .. past + i.
        rows = torch.arange(t, device=q.device)[:, None] + past
        mask = torch.arange(past + t, device=q.device)[None, :] <= rows
        return F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, dropout_p=p)

    def advance(self, n: int) -> None:
        """Mark ``n`` more positions as filled."""
        self.length += n


class KVCursor:
    """A :class:`KVCache`'s buffers with the write position held on the device.

    ``position`` (a one-element int64 tensor) is where the next token goes; :meth:`attend` writes
    the new keys and values there (an indexed store) and attends over all ``max_len`` cached
    positions with a mask of those ``<=`` each query's position (scores, masked softmax in fp32,
    weighted sum: two batched matmuls), and :meth:`advance` adds to
    ``position`` in place. No shape and no Python value changes from one step to the next, so a
    step compiles once and one CUDA graph replays every step. The caller keeps ``position`` below
    ``max_len`` (an indexed store past the end is a device-side error, not a Python one).
    """

    def __init__(self, cache: KVCache) -> None:
        self.cache = cache
        self.max_len = cache.max_len
        device = cache.keys[0].device if cache.keys else None
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.slots = torch.arange(cache.max_len, device=device)

    def positions(self, t: int, device: torch.device) -> torch.Tensor:
        """Positions ``position .. position + t - 1`` of ``t`` new tokens (a device tensor)."""
        return self.position + torch.arange(t, device=device)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int, p: float) -> torch.Tensor:
        """Store ``k``/``v`` at the device position and attend over the cache with a length mask."""
        at = self.positions(q.size(2), q.device)
        keys, values = self.cache.keys[layer], self.cache.values[layer]
        keys[:, :, at] = k.to(keys.dtype)  # an in-place indexed store (inductor keeps it in place)
        values[:, :, at] = v.to(values.dtype)
        mask = self.slots[None, :] <= at[:, None]
        # Written out rather than SDPA: a fused attention kernel gives one thread block per (row,
        # head) and walks all max_len keys in it, leaving most of a GPU idle at batch 1 (H200,
        # fp32: 1.9 ms a token over 1,024 positions against 0.79 ms for the step over 129); two
        # batched matmuls spread the keys over the GPU.
        scores = torch.matmul(q, keys.transpose(-1, -2)) * q.size(-1) ** -0.5
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")).float(), dim=-1).to(q.dtype)
        return torch.matmul(F.dropout(weights, p) if p else weights, values)

    def advance(self, n: int) -> None:
        """Move the device position by ``n`` (in place)."""
        self.position.add_(n)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` Linear and SDPA, at width
    ``n_heads * head_dim`` (``head_dim`` defaults to ``d_model // n_heads``)."""

    def __init__(self, d_model: int, n_heads: int, *, head_dim: int | None = None, bias: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if head_dim is None:
            if d_model % n_heads:
                raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
            head_dim = d_model // n_heads
        self.n_heads = n_heads
        self.head_dim = head_dim
        self.qkv = nn.Linear(d_model, 3 * n_heads * head_dim, bias=bias)
        self.proj = nn.Linear(n_heads * head_dim, d_model, bias=bias)
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        *,
        is_causal: bool = True,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | KVCursor | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """``x``: ``(B, T, D)``. ``attn_mask`` (bool, True = may attend) is broadcast to
        ``(B, H, T, S)``; it is only used when ``is_causal`` is False."""
        # (B, T, 3 H hd) -> (3, B, H, T, hd) without reading B or T in Python (fx-friendly). The
        # head count comes from the width: under tensor parallelism qkv is this rank's heads' q|k|v.
        qkv = self.qkv(x).unflatten(-1, (3, -1, self.head_dim)).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        p = self.dropout if self.training else 0.0
        if cache is None:
            if is_causal:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        else:
            y = cache.attend(q, k, v, layer, p)
        return self.resid_drop(self.proj(y.transpose(1, 2).flatten(2)))


class MLP(nn.Module):
    """Position-wise feed-forward: Linear -> GELU (tanh) -> Linear."""

    def __init__(self, d_model: int, d_ff: int, *, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, bias=bias)
        self.act = nn.GELU(approximate="tanh")
        self.proj = nn.Linear(d_ff, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, D) -> (B, T, D)``."""
        return self.drop(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        *,
        head_dim: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, eps=norm_eps, bias=bias)
        self.attn = SelfAttention(d_model, n_heads, head_dim=head_dim, bias=bias, dropout=dropout)
        self.ln2 = nn.LayerNorm(d_model, eps=norm_eps, bias=bias)
        self.mlp = MLP(d_model, d_ff, bias=bias, dropout=dropout)

    def forward(
        self,
        x: torch.Tensor,
        *,
        is_causal: bool = True,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | KVCursor | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """``(B, T, D) -> (B, T, D)``; see :meth:`SelfAttention.forward` for the options."""
        x = x + self.attn(self.ln1(x), is_causal=is_causal, attn_mask=attn_mask, cache=cache, layer=layer)
        return x + self.mlp(self.ln2(x))


def run_blocks(
    blocks: list[nn.Module] | nn.ModuleList,
    x: torch.Tensor,
    *,
    checkpointing: bool = False,
    is_causal: bool = True,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply ``blocks`` in order, each under activation checkpointing when asked (and while
    gradients are being recorded)."""
    if checkpointing and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        for block in blocks:
            x = checkpoint(block, x, is_causal=is_causal, attn_mask=attn_mask, use_reentrant=False)
        return x
    for block in blocks:
        x = block(x, is_causal=is_causal, attn_mask=attn_mask)
    return x


def residual_cast(x: torch.Tensor, fp32_residual: bool) -> torch.Tensor:
    """The embeddings as the residual stream: unchanged (fp32 under autocast over fp32 weights)
    or, with ``fp32_residual=False`` under autocast, in the autocast dtype (Megatron's default),
    which halves the residual stream's memory traffic and its saved activations."""
    kind = x.device.type
    if fp32_residual or not torch.is_autocast_enabled(kind):
        return x
    return x.to(torch.get_autocast_dtype(kind))


def init_weights(module: nn.Module, n_layers: int, std: float = 0.02) -> None:
    """GPT-2 initialisation: N(0, std) for Linear and Embedding weights, zero biases, and
    std / sqrt(2 * n_layers) for the projections that write into the residual stream."""
    resid_std = std / (2 * n_layers) ** 0.5
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            is_resid = name.endswith("attn.proj") or name.endswith("mlp.proj")
            nn.init.normal_(m.weight, mean=0.0, std=resid_std if is_resid else std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def make_blocks(c: Any) -> nn.ModuleList:
    """The Transformer trunk shared by GPT and the text encoder, from a ``GPTConfig``."""
    d_ff = c.d_ff or 4 * c.d_model
    return nn.ModuleList(
        Block(c.d_model, c.n_heads, d_ff, head_dim=c.head_dim, bias=c.bias, dropout=c.dropout, norm_eps=c.norm_eps)
        for _ in range(c.n_layers)
    )
