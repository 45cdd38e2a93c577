"""The user's model is never changed by a pass: a fingerprint of its parameters and buffers,
taken before any pass runs and compared after each one.

Captured graphs share the model's parameters and sub-modules, so a pass that writes to them in
place (``p.mul_(2)`` under ``no_grad``, ``p.data.add_(...)``, ``p.data = ...``, ``setattr`` of a
sub-module's weight) changes the model the caller holds, and the eager reference every candidate
is compared with no longer describes it. ``_version`` counters miss writes through ``.data``, so
the fingerprint reads the values (and each sub-module's settings, its ``extra_repr``): per tensor, the identity of the tensor object and of its
storage, its shape and strides, and two integer sums of its bytes (plain, and weighted by
position in rows and columns of :data:`BLOCK` words, so a changed bit or moved values change
them). It reads every weight twice, at memory speed (about 0.1 s for 86M fp32 parameters on one
CPU thread), before the passes and after each one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from deepseek.errors import PluginError

BLOCK = 512
"""64-bit words per row when the position-weighted sums are taken."""


def _bits_digest(t: torch.Tensor) -> tuple[int, int]:
    """``(sum, position-weighted sum)`` of ``t``'s bytes read as 64-bit integers (wrapping); a
    reduction of int64 without a type promotion, about as fast as reading the memory."""
    raw = t.detach().reshape(-1)
    if raw.is_complex():
        raw = torch.view_as_real(raw).reshape(-1)
    try:
        octets = raw.view(torch.uint8)
    except RuntimeError:  # an offset that no byte view allows
        octets = raw.clone().view(torch.uint8)
    full = octets.numel() // (8 * BLOCK) * (8 * BLOCK)
    try:
        words = octets[:full].view(torch.int64).view(-1, BLOCK)
    except RuntimeError:  # not 8-byte aligned in its storage
        words = octets[:full].clone().view(torch.int64).view(-1, BLOCK)
    rows, cols = words.sum(1), words.sum(0)
    tail = octets[full:].to(torch.int64)
    at = torch.arange

    def weighted(x: torch.Tensor) -> torch.Tensor:
        return (x * at(1, x.numel() + 1, device=x.device)).sum()

    total = rows.sum() + tail.sum()
    return int(total), int(weighted(rows) + 7919 * weighted(cols) + 104729 * weighted(tail))


def _digest(t: torch.Tensor) -> tuple[Any, ...]:
    what = (id(t), tuple(t.shape), tuple(t.stride()), t.dtype, str(t.device))
    if t.is_meta or t.layout != torch.strided or type(t) not in (torch.Tensor, nn.Parameter):
        return (*what, t._version)  # no values to read (meta, sparse, a library's tensor subclass)
    return (*what, t.untyped_storage().data_ptr(), t.storage_offset(), *_bits_digest(t))


def fingerprint(model: nn.Module) -> dict[str, tuple[Any, ...]]:
    """What identifies the values of every parameter and buffer of ``model``, by name, and every
    sub-module's settings (its type and ``extra_repr``: a LayerNorm's ``eps``, a Linear's
    shape), by name with a trailing ``/``."""
    with torch.no_grad():
        named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
        tensors = {name: _digest(t) for name, t in named}
    modules = {f"{name}/": (id(m), type(m).__qualname__, m.extra_repr()) for name, m in model.named_modules()}
    return {**tensors, **modules}


class ModelGuard:
    """Refuses, in one line, once a pass has changed the model it was made for."""

    def __init__(self, model: nn.Module, label: Callable[[Any], str]) -> None:
        self.model = model
        self.label = label
        self.before = fingerprint(model)

    def check(self, graph_pass: Any) -> None:
        """A :class:`PluginError` naming ``graph_pass`` by ``label`` (its registration's label:
        :func:`~deepseek.graph.spec.pass_label`) unless the model's parameters and buffers are as they were."""
        after = fingerprint(self.model)
        changed = [n for n in {**self.before, **after} if self.before.get(n) != after.get(n)]
        if not changed:
            return
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise PluginError(
            f"optimizer: {self.label(graph_pass)} changed the model's own parameters, "
            f"buffers or modules in place ({changed[0]}{more}); nothing was optimized and the model you passed is no longer "
            "the one you loaded: reload it before using it, and leave the pass out (passes=[...] without it) "
            "or fix it to rewrite the graph without writing to the model's tensors"
        )
