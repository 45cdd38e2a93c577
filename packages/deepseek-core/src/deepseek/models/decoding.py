"""The KV-cache decoding loop, one implementation for every way a model is placed.

:func:`run_decode` extends a batch of prompts token by token through a :class:`DecodeSession`,
which owns the cache and the sampling:

- :class:`EagerSession` (what :func:`decode` builds) calls two callables of the model:
  ``new_cache(batch, max_len)``, an empty KV cache for the layers (and heads) this process holds,
  and ``next_logits(ids, cache)``, the logits ``(B, V)`` of the last position after feeding
  ``ids`` ``(B, T)`` behind the ``cache.length`` cached positions, appending their keys and
  values. A whole :class:`~deepseek.models.gpt.GPT` (heads split by ``tp`` or not) passes its own
  ``forward_cached``; under the ``pipeline`` strategy each stage holds the cache of its own blocks
  and the last stage's logits are sent to every rank, so every rank samples the same tokens.
- :class:`~deepseek.models.static_decoding.StaticSession` keeps a preallocated cache with the
  position on the device and replays one CUDA graph per step (step and sampling together).

Both sample with :func:`sample_next`, so for the same logits and generator they draw the same
tokens. A repetition penalty (Hugging Face's ``repetition_penalty``, :func:`penalize_repeats`)
needs the tokens each row has seen: a session keeps them as a ``(B, V)`` mask (:class:`SeenTokens`),
set from the whole prompt at the request's first prefill and from each sampled token after. :func:`generate_cached` is capability ``generation`` of any model with
``cached_decoding``, eager or (with ``static_decoding``) on a static cache: the GPT's ``generate``
and a plugin model's are one call of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from deepseek.errors import UsageError
from deepseek.models.cache_checks import decode_window_of, fed_cached, fresh_cache

NextLogits = Callable[[torch.Tensor, Any], torch.Tensor]
NewCache = Callable[[int, int], Any]


class DecodeSession(Protocol):
    """The cache and sampler of one :func:`run_decode` call (one batch of prompts)."""

    length: int
    """Positions the cache holds now (known on the host without reading the device)."""

    def prefill(self, ids: torch.Tensor, prompt: torch.Tensor | None = None) -> None:
        """Start a fresh cache from ``ids`` ``(B, T)`` and sample the next token. ``prompt``: the
        request's whole prompt ``(B, T0)`` when this prefill starts the request (the tokens a
        repetition penalty counts as seen), ``None`` when it rebuilds the cache."""

    def step(self) -> None:
        """Feed the last sampled token and sample the next one."""

    def last(self) -> torch.Tensor:
        """The token sampled last, ``(B, 1)`` (a tensor of its own)."""

    def generated(self) -> torch.Tensor:
        """Every token sampled since the session began, ``(B, n)``."""

    def close(self) -> None:
        """The session is over (hand back what it borrowed, such as the generator's state)."""


class SeenTokens:
    """The tokens each row of a request has seen (its prompt and what was sampled), as a ``(B, V)``
    bool mask for :func:`penalize_repeats`; allocated at the first logits (``V`` is their width)
    and updated on the device only, so a CUDA graph can capture :meth:`add`."""

    def __init__(self) -> None:
        self.mask: torch.Tensor | None = None

    def ensure(self, logits: torch.Tensor) -> torch.Tensor:
        """The mask, allocated (all False) for ``logits`` ``(B, V)`` if it is not yet."""
        if self.mask is None or self.mask.shape != logits.shape or self.mask.device != logits.device:
            self.mask = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
        return self.mask

    def start(self, logits: torch.Tensor, prompt: torch.Tensor) -> None:
        """Only the ``prompt`` ``(B, T)`` tokens are seen (a new request)."""
        mask = self.ensure(logits)
        mask.zero_()
        mask.scatter_(1, prompt.to(mask.device), True)

    def add(self, token: torch.Tensor) -> None:
        """``token`` ``(B, 1)`` is seen too."""
        if self.mask is not None:
            self.mask.scatter_(1, token, True)


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Hugging Face's repetition penalty (``RepetitionPenaltyLogitsProcessor``): the logits
    ``(B, V)`` of the tokens ``seen`` (a ``(B, V)`` bool mask) divided by ``penalty`` where
    positive and multiplied by it where negative, so ``penalty > 1`` makes repeats less likely
    either way; the other logits are unchanged."""
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


class EagerSession:
    """A :class:`DecodeSession` over a model's ``new_cache`` / ``next_logits`` callables."""

    def __init__(self, next_logits: NextLogits, new_cache: NewCache, batch: int, window: int, *,
                 temperature: float, top_k: int | None, generator: torch.Generator | None,
                 top_p: float | None = None, repetition_penalty: float = 1.0) -> None:
        self.next_logits, self.new_cache = next_logits, new_cache
        self.batch, self.window = batch, window
        self.temperature, self.top_k, self.top_p, self.generator = temperature, top_k, top_p, generator
        self.repetition_penalty = repetition_penalty
        self.seen = SeenTokens()
        self.cache: Any = None
        self.tokens: list[torch.Tensor] = []
        self.length = 0

    def prefill(self, ids: torch.Tensor, prompt: torch.Tensor | None = None) -> None:
        """A new cache holding ``ids``; samples from the last position's logits."""
        self.cache = self.new_cache(self.batch, self.window)
        self._sample(self.next_logits(ids, self.cache), prompt)

    def step(self) -> None:
        """One cached step on the last token."""
        self._sample(self.next_logits(self.tokens[-1], self.cache))

    def _sample(self, logits: torch.Tensor, prompt: torch.Tensor | None = None) -> None:
        penalty = self.repetition_penalty
        if penalty != 1.0 and prompt is not None:
            self.seen.start(logits, prompt)
        token = sample_next(logits, self.temperature, self.top_k, self.generator, top_p=self.top_p,
                            repetition_penalty=penalty, seen=self.seen.mask if penalty != 1.0 else None)
        self.seen.add(token)
        self.tokens.append(token)
        self.length = self.cache.length

    def last(self) -> torch.Tensor:
        """The token sampled last."""
        return self.tokens[-1]

    def generated(self) -> torch.Tensor:
        """Every sampled token."""
        return torch.cat(self.tokens, dim=1)

    def close(self) -> None:
        """Nothing to hand back."""


def check_request(idx: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int | None,
                  top_p: float | None = None, repetition_penalty: float = 1.0, *,
                  generator: Any = None, on_token: Any = None) -> None:
    """One line for a request :func:`decode` cannot serve, naming the argument: each of the right
    kind (``max_new_tokens`` and ``top_k`` whole numbers, the others finite numbers, never a bool)
    and in its range, and ``idx`` a ``(batch, seq)`` tensor of token ids."""
    from deepseek.api_args import decode_number, decode_whole

    decode_whole(max_new_tokens, "max_new_tokens")
    decode_number(temperature, "temperature")
    if top_k is not None:
        decode_whole(top_k, "top_k")
    if top_p is not None:
        decode_number(top_p, "top_p")
    decode_number(repetition_penalty, "repetition_penalty")
    if not isinstance(idx, torch.Tensor) or idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex():
        got = f"a {str(idx.dtype).removeprefix('torch.')} tensor" if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise UsageError(f"generate: prompt (idx) must be a tensor of token ids (torch.long), got {got}; "
                         "e.g. torch.tensor([ids], dtype=torch.long)")
    if idx.dim() != 2 or idx.size(1) == 0:
        raise UsageError(f"generate: prompt must be (batch, seq) with seq >= 1, got {tuple(idx.shape)}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise UsageError(f"generate: generator must be a torch.Generator or None, got {type(generator).__name__}; "
                         "e.g. torch.Generator().manual_seed(0)")
    if on_token is not None and not callable(on_token):
        raise UsageError(f"generate: on_token must be a function of each new column of tokens, got "
                         f"{type(on_token).__name__}")


def check_token_ids(idx: torch.Tensor, vocab_size: int | None) -> None:
    """The prompt's ids are ids of the model's ``vocab_size`` tokens (``None``: not known), or one
    line; an embedding would otherwise fail with an ``IndexError`` (or a device assert)."""
    if vocab_size is None or idx.numel() == 0:
        return
    low, high = int(idx.min()), int(idx.max())
    if low < 0 or high >= vocab_size:
        raise UsageError(f"generate: prompt (idx) holds token id {low if low < 0 else high}, outside the model's "
                         f"{vocab_size} tokens (0 to {vocab_size - 1}); encode the prompt with the model's tokenizer")


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
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
) -> torch.Tensor:
    """:func:`run_decode` with an :class:`EagerSession` over ``next_logits`` / ``new_cache``."""
    check_request(idx, max_new_tokens, temperature, top_k, top_p, repetition_penalty, generator=generator,
                  on_token=on_token)
    session = EagerSession(next_logits, new_cache, idx.size(0), window, temperature=temperature, top_k=top_k,
                           generator=generator, top_p=top_p, repetition_penalty=repetition_penalty)
    return run_decode(session, idx, max_new_tokens, window=window, on_token=on_token)


@torch.no_grad()
def generate_cached(
    model: Any,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    on_token: Callable[[torch.Tensor], None] | None = None,
    static: Any = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
) -> torch.Tensor:
    """``TrainableModel.generate`` of ``model`` (a model offering ``cached_decoding``): its own
    ``forward_cached`` / ``new_cache`` / ``decode_window`` through :func:`run_decode`, each answer
    held to its contract (:mod:`deepseek.models.cache_checks`: the window a positive int, a new
    cache of length 0, ``cache.length`` advanced by the positions each call was fed), in eval mode (its training mode restored after). ``static``: a
    :class:`~deepseek.models.static_decoding.StaticDecoders` to decode on (one static-cache
    decoder per batch size, its cache sized to the prompt plus the new tokens; a model without
    ``static_decoding`` is refused in one line). ``repetition_penalty``: :func:`penalize_repeats`
    over the prompt's and the sampled tokens (1.0: off)."""
    check_request(idx, max_new_tokens, temperature, top_k, top_p, repetition_penalty, generator=generator,
                  on_token=on_token)
    from deepseek.models.declared import generation_vocab_size

    check_token_ids(idx, generation_vocab_size(model))
    window = decode_window_of(model)
    was_training = model.training
    model.eval()
    try:
        session: DecodeSession
        if static is not None:
            from deepseek.models.static_decoding import static_refusal

            reason = static_refusal(model, graphs=static.graphs)
            if reason is not None:
                raise UsageError(f"generate: static-cache decoding cannot serve this model: {reason}; "
                                 "decode without it")
            session = static.session(model, idx.size(0), window, temperature=temperature, top_k=top_k,
                                     generator=generator, positions=min(idx.size(1), window) + max_new_tokens,
                                     top_p=top_p, repetition_penalty=repetition_penalty)
        else:
            session = EagerSession(lambda ids, cache: fed_cached(model, ids, cache)[:, -1],
                                   lambda batch, size: fresh_cache(model, batch, size),
                                   idx.size(0), window, temperature=temperature, top_k=top_k, generator=generator,
                                   top_p=top_p, repetition_penalty=repetition_penalty)
        return run_decode(session, idx, max_new_tokens, window=window, on_token=on_token)
    finally:
        model.train(was_training)


@torch.no_grad()
def run_decode(
    session: DecodeSession,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    window: int,
    on_token: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """``idx`` ``(B, T)`` extended by ``max_new_tokens`` sampled tokens: ``(B, T + new)``.

    One prefill of the prompt's last ``window`` tokens, then one token per step. When the cache
    holds ``window`` positions it is rebuilt from the last half window (positions restart at 0),
    so each rebuild buys ``window / 2`` cheap steps. ``on_token`` gets each new column ``(B, 1)``
    as soon as it is sampled (time to first token, streaming)."""
    if max_new_tokens == 0:
        session.close()
        return idx
    try:
        session.prefill(idx[:, -window:], prompt=idx)
        for step in range(max_new_tokens):
            if on_token is not None:
                on_token(session.last())
            if step == max_new_tokens - 1:
                break
            if session.length == window:
                context = torch.cat([idx, session.generated()], dim=1)
                session.prefill(context[:, -(window // 2 or 1):])
            else:
                session.step()
        return torch.cat([idx, session.generated()], dim=1)
    finally:
        session.close()


def sample_next(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None,
    top_p: float | None = None, repetition_penalty: float = 1.0, seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """Next token ids ``(B, 1)`` from last-position logits ``(B, V)``: greedy at ``temperature``
    0, else drawn from the softmax of ``logits / temperature`` restricted to the ``top_k``
    likeliest tokens and then to the nucleus of ``top_p`` (the fewest likeliest tokens whose
    probabilities sum to at least ``top_p``; the likeliest always stays). With ``seen`` (a
    ``(B, V)`` bool mask) and ``repetition_penalty`` other than 1.0 the logits are first
    :func:`penalize_repeats` (before the temperature and the greedy choice, as in Hugging Face)."""
    logits = logits.float()
    if seen is not None and repetition_penalty != 1.0:
        logits = penalize_repeats(logits, seen, repetition_penalty)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    # Shifted so the largest is 0 before the division, by at least float32's smallest normal
    # number: a tiny temperature (1e-39, 1e-300) sends the others to -inf and keeps the largest,
    # not every logit to +-inf or 0/0 (whose softmax is NaN and whose draws were no tokens at all).
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / max(temperature, torch.finfo(torch.float32).tiny)
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        # Sorted descending, a token stays when the tokens before it hold less than top_p: the
        # smallest set reaching top_p (device-side only, so a CUDA graph can capture it).
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        drop = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, order, before >= top_p)
        probs = probs.masked_fill(drop, 0.0)
    # torch.multinomial's own one-sample path, written out: the same draws for the same generator
    # state, and no host-side validity check, so a CUDA graph can capture it.
    noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / noise).argmax(dim=-1, keepdim=True)
