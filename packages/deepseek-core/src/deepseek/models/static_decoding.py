"""Static-cache decoding: one preallocated KV cache, the position on the device, one CUDA graph.

A :class:`StaticDecoder` serves one batch size and one sampling setting (temperature, top-k,
top-p, repetition penalty) of one model:

- the KV cache ``(batch, heads, max_len, head_dim)`` per layer is allocated once; the prompt is
  prefilled through the model's ordinary ``forward_cached`` (host-side length, exactly the eager
  computation), then each step goes through a :class:`~deepseek.models.layers.KVCursor`: the
  write position is a device tensor, attention runs over all ``max_len`` positions with a length
  mask, and the token ids come from a static buffer, so every step has the same shapes and the
  same Python path;
- the step is compiled with inductor (no CUDA graphs of its own) when ``compile_step``;
- on CUDA, step + sampling (:func:`~deepseek.models.decoding.sample_next`: greedy argmax, or
  temperature / top-k with the exponential-race draw on the decoder's own generator, registered
  with the graph so each replay draws fresh numbers) + writing the token into the input buffer
  and into a ring of the last :data:`RING` tokens (and, with a repetition penalty, into the
  :class:`~deepseek.models.decoding.SeenTokens` mask the penalty reads) are captured in one ``torch.cuda.CUDAGraph``.
  A step is then one ``replay()``: no host sync between steps; the host copies the ring out every
  :data:`RING` steps and at the end, and reads the device position back where it reads the tokens
  (a rebuild, the end) to check that the model's steps advanced it.

:class:`StaticSession` is the :class:`~deepseek.models.decoding.DecodeSession` over a decoder:
the caller's generator state is copied into the decoder's generator at the start and back at the
end, so a seed gives the tokens eager decoding gives (for the same logits) and the generator
advances as it would have. :class:`StaticDecoders` keeps the decoders a caller reuses (one per
batch size, cache length and sampling setting; a new capture when the weights were reallocated).
The cache is sized to the request, not to the model's window (:func:`static_cache_length`): the
prompt's positions plus the new tokens, rounded up to a multiple of :data:`CACHE_STEP` so that
similar requests share one decoder (and one graph), at most the window; a request longer than
the window gets the whole window and the cache is rebuilt from the last half window as in eager
decoding. Each step attends over the cache's length, so a short request pays for its own
positions only.

:func:`static_refusal` says in one line why a model cannot decode this way (tensor-parallel
weights, pipeline stages, no KV-cache decoding, a CPU device for graphs).
"""

from __future__ import annotations

import types
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from deepseek.models.cache_checks import check_cursor, fed_cached
from deepseek.models.capabilities import model_capabilities
from deepseek.models.decoding import SeenTokens, sample_next
from deepseek.models.layers import KVCache, KVCursor
from deepseek.models.protocol import TrainableModel

RING = 128
"""Token columns the graph writes before the host copies them out."""

CACHE_STEP = 64
"""Static caches are a multiple of this many positions long (or the whole window)."""


def static_cache_length(positions: int, window: int, *, step: int = CACHE_STEP) -> int:
    """The static cache's length for a request that fills at most ``positions`` positions (its
    prompt's, at most ``window``, plus its new tokens): ``positions`` rounded up to a multiple of
    ``step``, at most ``window``, at least one ``step`` (or the window)."""
    if window < 1 or step < 1:
        raise ValueError(f"static_cache_length: window {window} and step {step} must be >= 1")
    return min(window, max(step, -(-positions // step) * step))


def static_refusal(model: nn.Module, *, graphs: bool = True) -> str | None:
    """Why ``model`` cannot decode through a :class:`StaticDecoder` (with CUDA graphs when
    ``graphs``), in a few words; ``None`` when it can."""
    if "cached_decoding" not in model_capabilities(model):
        return (f"the model ({type(model).__name__}) offers no whole-model KV-cache decoding in this process "
                "(capability 'cached_decoding'; pipeline stages decode eagerly)")
    if not isinstance(model, TrainableModel) or not model.static_decoding:
        return (f"the model ({type(model).__name__}) does not declare static_decoding (its forward_cached "
                "must take a KVCursor: docs/plugins.md, 'Models')")
    params = list(model.parameters())
    if not params:
        return "the model has no parameters"
    if torch.distributed.is_available() and torch.distributed.is_initialized():  # DTensors need a group
        from torch.distributed.tensor import DTensor

        if any(isinstance(p, DTensor) for p in params):
            return "its weights are split over processes (tensor parallelism)"
    device = params[0].device
    if graphs and device.type != "cuda":
        return f"the model is on {device.type}, CUDA graphs need a CUDA device"
    return None


def _forward_step(model: nn.Module, tokens: torch.Tensor, cursor: KVCursor) -> torch.Tensor:
    """Last-position logits ``(B, V)`` of ``tokens`` ``(B, 1)`` at the cursor's position."""
    return model.forward_cached(tokens, cursor)[:, -1]  # type: ignore[operator]


def _compiled_step() -> Any:
    """:func:`_forward_step` compiled for one decoder, on a code object of its own: torch.compile
    keeps a function's compiled versions on its code object and, past ``recompile_limit`` (8)
    shapes, runs it uncompiled, so decoders sharing one function (one per batch size and cache
    length, more than 8 when serving prompts of many lengths) would get uncompiled steps from
    the ninth on; this way each decoder's compiled step also goes when the decoder does."""
    code = _forward_step.__code__.replace()
    return torch.compile(types.FunctionType(code, _forward_step.__globals__, _forward_step.__name__), dynamic=False)


class StaticDecoder:
    """Static cache, compiled step and (on CUDA) the captured graph for one batch size and one
    sampling setting; see the module docstring."""

    def __init__(self, model: nn.Module, batch: int, max_len: int, *, temperature: float, top_k: int | None,
                 graphs: bool, compile_step: bool, top_p: float | None = None,
                 repetition_penalty: float = 1.0) -> None:
        cache = model.new_cache(batch, max_len)  # type: ignore[operator]
        if not isinstance(cache, KVCache):
            raise TypeError(f"{type(model).__name__}.new_cache gave {type(cache).__name__}, not a KVCache")
        self.model, self.cache, self.cursor = model, cache, KVCursor(cache)
        self.device = cache.keys[0].device
        self.batch, self.max_len = batch, max_len
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.repetition_penalty = repetition_penalty
        self.seen = SeenTokens()
        """The tokens seen, when there is a penalty (allocated by the first logits, before any capture)."""
        self.tokens = torch.zeros(batch, 1, dtype=torch.long, device=self.device)
        """The step's input: the token sampled last (the graph writes it)."""
        self.ring = torch.zeros(batch, RING, dtype=torch.long, device=self.device)
        self.slot = torch.zeros(1, dtype=torch.long, device=self.device)
        self.generator = torch.Generator(device=self.device) if temperature > 0 else None
        self._step = _compiled_step() if compile_step else _forward_step
        self.logits: torch.Tensor | None = None
        """The last step's logits ``(B, V)`` (the graph's output buffer)."""
        self.graph: torch.cuda.CUDAGraph | None = None
        if graphs:
            self._capture()

    def _body(self) -> torch.Tensor:
        logits = self._step(self.model, self.tokens, self.cursor)
        self.emit(self._sample(logits))
        return logits

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        penalty = self.repetition_penalty
        seen = self.seen.ensure(logits) if penalty != 1.0 else None
        return sample_next(logits, self.temperature, self.top_k, self.generator, top_p=self.top_p,
                           repetition_penalty=penalty, seen=seen)

    def emit(self, token: torch.Tensor) -> None:
        """``token`` ``(B, 1)`` becomes the next step's input and the ring's next column (and is
        seen, for the repetition penalty)."""
        self.seen.add(token)
        self.tokens.copy_(token)
        self.ring.index_copy_(1, self.slot, token)
        self.slot.add_(1)

    @torch.no_grad()
    def _capture(self) -> None:
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(2):  # compiles the step and loads its kernels outside the capture
                self._body()
            self.slot.zero_()
            self.cursor.position.zero_()
        current.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if self.generator is not None:
            graph.register_generator_state(self.generator)
        with torch.cuda.graph(graph):
            self.logits = self._body()
        self.graph = graph

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, prompt: torch.Tensor | None = None) -> None:
        """Fill the cache from position 0 with ``ids`` ``(B, T)`` (the eager computation), put
        the position after them and sample the next token; ``prompt``: the request's whole prompt
        when this prefill starts it (the seen tokens start from it), ``None`` on a rebuild."""
        self.cache.length = 0
        logits = fed_cached(self.model, ids, self.cache)[:, -1]  # the host-side length advanced, as eagerly
        self.cursor.position.fill_(ids.size(1))
        if self.repetition_penalty != 1.0 and prompt is not None:
            self.seen.start(logits, prompt)
        self.emit(self._sample(logits))

    @torch.no_grad()
    def step(self) -> torch.Tensor:
        """One step on :attr:`tokens` (a graph replay on CUDA); returns the logits buffer."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self.logits = self._body()
        assert self.logits is not None
        return self.logits

    @torch.no_grad()
    def step_at(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """The step for ``tokens`` ``(B, 1)`` at ``position`` (the cache must hold the positions
        before it): the same step every call, for latency measurements."""
        self.tokens.copy_(tokens)
        self.cursor.position.fill_(position)
        self.slot.zero_()
        return self.step()


def default_generator(device: torch.device) -> torch.Generator:
    """The generator ``torch`` draws from on ``device`` when none is given."""
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


class StaticSession:
    """The :class:`~deepseek.models.decoding.DecodeSession` of one decode call on a decoder."""

    def __init__(self, decoder: StaticDecoder, generator: torch.Generator | None) -> None:
        self.decoder = decoder
        self.source = generator if generator is not None else default_generator(decoder.device)
        if decoder.generator is not None:
            decoder.generator.set_state(self.source.get_state())
        decoder.slot.zero_()
        self.chunks: list[torch.Tensor] = []
        self.filled = 0
        """Ring columns written in this session since the last copy-out."""
        self.length = 0
        self.steps = 0
        """One-token steps since the last prefill."""

    def _make_room(self) -> None:
        if self.filled == RING:
            self.chunks.append(self.decoder.ring.clone())
            self.decoder.slot.zero_()
            self.filled = 0

    def prefill(self, ids: torch.Tensor, prompt: torch.Tensor | None = None) -> None:
        """A fresh cache (position 0) holding ``ids`` (``prompt``: as for :meth:`StaticDecoder.prefill`)."""
        self._make_room()
        self.decoder.prefill(ids, prompt)
        self.filled += 1
        self.length = ids.size(1)
        self.steps = 0

    def step(self) -> None:
        """One step (a graph replay on CUDA)."""
        self._make_room()
        self.decoder.step()
        self.filled += 1
        self.length += 1
        self.steps += 1

    def last(self) -> torch.Tensor:
        """The token sampled last (a copy)."""
        return self.decoder.ring[:, self.filled - 1:self.filled].clone()

    def generated(self) -> torch.Tensor:
        """Every token sampled in this session (read back at a rebuild and at the end, so the
        device position is checked there too: :func:`~deepseek.models.cache_checks.check_cursor`)."""
        check_cursor(int(self.decoder.cursor.position), self.length, self.steps)
        return torch.cat([*self.chunks, self.decoder.ring[:, :self.filled]], dim=1)

    def close(self) -> None:
        """Hand the generator's state back to the caller's generator."""
        if self.decoder.generator is not None:
            self.source.set_state(self.decoder.generator.get_state())


class StaticDecoders:
    """The :class:`StaticDecoder` s a caller reuses across decode calls: one per model, batch size,
    cache length and sampling setting, at most ``keep`` (the least recently used goes first).
    ``graphs``: capture CUDA graphs (CUDA only); ``compile_step``: compile the step with inductor;
    ``step``: cache lengths are multiples of it (:func:`static_cache_length`)."""

    def __init__(self, *, graphs: bool = True, compile_step: bool = True, keep: int = 8,
                 step: int = CACHE_STEP) -> None:
        self.graphs, self.compile_step, self.keep, self.step = graphs, compile_step, keep, step
        self._decoders: OrderedDict[tuple[Any, ...], StaticDecoder] = OrderedDict()

    def lengths(self) -> list[tuple[int, int]]:
        """``(batch, cache length)`` of every kept decoder, the least recently used first."""
        return [(d.batch, d.max_len) for d in self._decoders.values()]

    def session(self, model: nn.Module, batch: int, window: int, *, temperature: float, top_k: int | None,
                generator: torch.Generator | None, positions: int | None = None,
                top_p: float | None = None, repetition_penalty: float = 1.0) -> StaticSession:
        """A session on the decoder for these settings (built, and captured, on first use): its
        cache holds :func:`static_cache_length` ``(positions, window)`` positions (``positions``:
        the most the request fills, its prompt's last ``window`` tokens plus its new ones;
        ``None``: the whole window). :func:`~deepseek.models.decoding.run_decode` with ``window``
        never writes past it: a request that fits below the window never reaches the rebuild, one
        that does not gets the whole window."""
        max_len = window if positions is None else static_cache_length(positions, window, step=self.step)
        weights = tuple(p.data_ptr() for p in model.parameters())
        key = (id(model), batch, max_len, temperature, top_k, top_p, repetition_penalty, weights)
        decoder = self._decoders.pop(key, None)
        if decoder is None:
            while len(self._decoders) >= self.keep:
                self._decoders.popitem(last=False)
            decoder = StaticDecoder(model, batch, max_len, temperature=temperature, top_k=top_k, top_p=top_p,
                                    graphs=self.graphs, compile_step=self.compile_step,
                                    repetition_penalty=repetition_penalty)
        self._decoders[key] = decoder
        return StaticSession(decoder, generator)


def choose_static(model: nn.Module, asked: bool | None, *, compile_step: bool | None = None,
                  serving: bool = False) -> tuple[StaticDecoders | None, str | None]:
    """What ``deepseek generate --cuda-graphs/--no-cuda-graphs`` (``asked``: True / False / not
    given, which is eager: the capture, and the compile, are paid per command, and on short
    generations that costs more than the faster steps save) and ``--compile-step/--no-compile-step``
    (``compile_step``) decode ``model`` with: the decoders to pass to ``generate`` (``None``:
    eager) and a line to print (now always None). The step is compiled by default only when
    ``serving`` a file of prompts (the compile takes seconds once per batch size and cache length; a single prompt
    is done sooner with the eager step in the graph). Asking for CUDA graphs where they cannot
    run, or for a compiled step without them, is a :class:`~deepseek.errors.UsageError`."""
    from deepseek.errors import UsageError

    reason = static_refusal(model) if asked is not False else "--no-cuda-graphs"
    if reason is not None and compile_step:
        raise UsageError(f"--compile-step: compiles the CUDA-graph step, and there is none here ({reason}); "
                         "drop --compile-step")
    if asked is False:
        return None, None
    if asked is None:
        if compile_step:
            raise UsageError("--compile-step: compiles the CUDA-graph step, which only --cuda-graphs makes; "
                             "add --cuda-graphs or drop --compile-step")
        return None, None
    if reason is None:
        return StaticDecoders(compile_step=serving if compile_step is None else compile_step), None
    raise UsageError(f"--cuda-graphs: {reason}; drop --cuda-graphs")
