"""The answers of capability ``cached_decoding`` (docs/plugins.md section 10) held to their
contract where core drives cached decoding (:func:`~deepseek.models.decoding.generate_cached` in
one process, pro's ``generate --strategy pipeline`` on each stage): ``decode_window`` a positive
int, ``new_cache`` a cache of ``length`` 0, and ``forward_cached`` adding the positions it was fed
to ``cache.length`` (on a static cache's ``KVCursor``, to its device position:
:func:`check_cursor`). Each answer against its contract is a
:class:`~deepseek.plugins.calls.BrokenAnswer`: raised in the model's ``model_calls`` block, a
plugin model's one-line ``PluginError`` naming its distribution (exit code 1); where nothing is
blamed (core's own model, a script's) the ``BrokenAnswer`` itself."""

from __future__ import annotations

from typing import Any

import torch

from deepseek.plugins.calls import BrokenAnswer


def decode_window_of(model: Any) -> int:
    """``model.decode_window()`` (a whole model's or a pipeline stage's) held to its contract
    (:meth:`~deepseek.models.protocol.TrainableModel.decode_window`): a positive int, returned as a
    plain ``int`` (which another rank can be sent); anything else is a
    :class:`~deepseek.plugins.calls.BrokenAnswer`, the model's bug (its one-line ``PluginError`` in
    its ``model_calls`` block), never read as a window."""
    window = model.decode_window()
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        got = (f"{window!r:.60} ({type(window).__name__})" if isinstance(window, (int, float, str))
               else f"a {type(window).__name__}")  # not the repr of any object: a function's holds its address
        raise BrokenAnswer(f"decode_window returned {got}, not a positive int: "
                           "the most positions its KV cache holds, the model's context length (docs/plugins.md, "
                           "'Models')")
    return int(window)


def cache_length(cache: Any, call: str) -> int:
    """``cache.length`` of a model's cache (``call``: the call whose answer it is, for the
    line), held to the contract: an ``int`` (never a bool). Anything else is a
    :class:`~deepseek.plugins.calls.BrokenAnswer`, as in :func:`decode_window_of`."""
    length = getattr(cache, "length", None)  # the model's answer read as data, not a capability probe
    if isinstance(length, bool) or not isinstance(length, int):
        got = "has none" if length is None else f"is a {type(length).__name__}"
        raise BrokenAnswer(f"{call} gave a {type(cache).__name__} whose length {got}: a cache must hold an int "
                           "length, the positions it holds (docs/plugins.md, 'Models')")
    return length


def fresh_cache(model: Any, batch: int, window: int) -> Any:
    """``model.new_cache(batch, window)`` (a whole model's or a pipeline stage's), held to its
    contract: a cache holding no positions, ``length`` 0; else a
    :class:`~deepseek.plugins.calls.BrokenAnswer` (the model's one-line ``PluginError`` in its
    ``model_calls`` block)."""
    cache = model.new_cache(batch, window)
    length = cache_length(cache, "new_cache")
    if length != 0:
        raise BrokenAnswer(f"new_cache({batch}, {window}) gave a cache of length {length}; a new cache holds no "
                           "positions, length 0 (docs/plugins.md, 'Models')")
    return cache


def fed_cached(model: Any, ids: torch.Tensor, cache: Any) -> torch.Tensor:
    """``model.forward_cached(ids, cache)`` (a whole model's or a pipeline stage's; ``ids``
    ``(B, T)`` token ids or a stage's ``(B, T, ...)`` hidden states) held to its contract: it
    adds the ``T`` positions it consumed to ``cache.length``, which the decoding loop reads to
    rebuild the cache at the window. A length left as it was (the cache then overruns the window,
    or the model attends at the wrong positions), gone backwards or moved by anything but ``T``
    is a :class:`~deepseek.plugins.calls.BrokenAnswer` naming the length before and after and the
    positions fed: two int reads per call. From a fresh cache (:func:`fresh_cache`) an exact
    advance keeps the length within the window, as the loop never feeds past it."""
    before = cache_length(cache, "new_cache")
    out = model.forward_cached(ids, cache)
    after, fed = cache_length(cache, "forward_cached"), ids.size(1)
    if after != before + fed:
        raise BrokenAnswer(f"forward_cached was fed {fed} position(s) at cache.length {before} and left it at "
                           f"{after}, not {before + fed}: it must add the positions it consumed to cache.length, "
                           "which the decoding loop reads to rebuild the cache at the window (docs/plugins.md, "
                           "'Models')")
    return out


def check_cursor(position: int, expected: int, steps: int) -> None:
    """A static cache's device position (a :class:`~deepseek.models.layers.KVCursor`'s, read back
    once when the tokens are: at a rebuild and at the end) after ``steps`` one-token steps, held
    to the contract of ``forward_cached`` on a cursor: ``cache.advance(t)`` moved it by every
    token fed, to ``expected``. Anything else is a :class:`~deepseek.plugins.calls.BrokenAnswer`
    (the steps wrote their keys over each other, or past the positions attended)."""
    if position != expected:
        raise BrokenAnswer(f"forward_cached on a static cache (KVCursor) left its position at {position} after "
                           f"{steps} one-token step(s), not {expected}: it must call cache.advance(t) with the "
                           "positions it consumed, as it adds them to a KVCache's length (docs/plugins.md, "
                           "'Models', static_decoding)")
