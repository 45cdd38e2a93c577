"""The one rule for ``strategy.compression``: whether a strategy applies a gradient compression
method (its ``Strategy.supports_compression``), checked when a config is loaded
(``deepseek.config.load``) and so again before ``deepseek launch`` starts any process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def compression_problem(name: str, cls: type, method: Any, offered: Sequence[str]) -> str | None:
    """The one-line error when strategy ``name`` (class ``cls``) cannot apply gradient compression ``method``, naming the registered
    strategies that can (``offered``: ``"ddp ('fp16', 'bf16', 'powersgd')"`` ...), or ``None``."""
    if method is None or method in ("none", ""):
        return None
    from deepseek.training.strategy import Strategy

    supported = tuple(cls.supports_compression) if isinstance(cls, type) and issubclass(cls, Strategy) else ()
    if method in supported:
        return None
    has = f"it supports {', '.join(map(repr, supported))}" if supported else "it compresses no gradients"
    if method == "powersgd":
        why = "PowerSGD is a DDP communication hook and needs whole, replicated gradients"
    else:
        why = f"{name!r} does not reduce gradients in {method}"
    where = f"use {' or '.join(offered)}" if offered else "no installed strategy compresses gradients"
    return (f"strategy.compression: {method!r} cannot be used with strategy {name!r} ({has}): {why}; "
            f"{where}, or remove strategy.compression")
