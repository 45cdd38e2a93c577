"""The KV-cache decoding loop, one implementation for every way a model is placed.

:func:`decode` extends a batch of prompts token by token. It needs two callables from the model:

- ``new_cache(batch, max_len)``: an empty KV cache for the layers (and heads) this process holds;
- ``next_logits(ids, cache)``: the logits ``(B, V)`` of the last position after feeding ``ids``
  ``(B, T)`` behind the ``cache.length`` cached positions, appending their keys and values.

A whole :class:`~deepseek.models.gpt.GPT` (heads split by ``tp`` or not) passes its own
``forward_cached``; under the ``pipeline`` strategy each stage holds the cache of its own blocks
and the last stage's logits are sent to every rank, so every rank samples the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from deepseek.errors import UsageError

NextLogits = Callable[[torch.Tensor, Any], torch.Tensor]
NewCache = Callable[[int, int], Any]


def check_request(idx: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int | None) -> None:
    """One line for a request :func:`decode` cannot serve."""
    if max_new_tokens < 0 or temperature < 0 or (top_k is not None and top_k <= 0):
        raise UsageError(
            f"generate: need max_new_tokens >= 0, temperature >= 0, top_k > 0 or None; got "
            f"{max_new_tokens}, {temperature}, {top_k}"
        )
    if idx.dim() != 2 or idx.size(1) == 0:
        raise UsageError(f"generate: prompt must be (batch, seq) with seq >= 1, got {tuple(idx.shape)}")


@torch.no_grad()
def decode(
    next_logits: NextLogits,
    new_cache: NewCache,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    window: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    on_token: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """``idx`` ``(B, T)`` extended by ``max_new_tokens`` sampled tokens: ``(B, T + new)``.

    One prefill of the prompt's last ``window`` tokens, then one token per step. ``temperature=0``
    is greedy. When the cache holds ``window`` positions it is rebuilt from the last half window
    (positions restart at 0), so each rebuild buys ``window / 2`` cheap steps. ``on_token`` gets
    each new column ``(B, 1)`` as soon as it is sampled (time to first token, streaming)."""
    check_request(idx, max_new_tokens, temperature, top_k)
    out = [idx]
    cache = new_cache(idx.size(0), window)
    logits = next_logits(idx[:, -window:], cache)
    for step in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_k, generator)
        out.append(nxt)
        if on_token is not None:
            on_token(nxt)
        if step == max_new_tokens - 1:
            break
        if cache.length == window:
            cache = new_cache(idx.size(0), window)
            logits = next_logits(torch.cat(out, dim=1)[:, -(window // 2 or 1):], cache)
        else:
            logits = next_logits(nxt, cache)
    return torch.cat(out, dim=1)


def sample_next(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Next token ids ``(B, 1)`` from last-position logits ``(B, V)``."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)
