"""How a message names what the user gave: the command line's option while a command that takes
it runs (:func:`command_line`: ``deepseek train`` around its trainer), else the keyword argument
of the Python call (``Trainer(resume=...)``, ``deepseek.fit(resume=...)``), so each reader is
told what to type."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar

_COMMAND_LINE: ContextVar[bool] = ContextVar("deepseek_command_line", default=False)


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Messages raised inside name the command line's options."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def spelled(option: str, keyword: str) -> str:
    """``option`` (``--resume``) under :func:`command_line`, else ``keyword`` (``resume=``)."""
    return option if _COMMAND_LINE.get() else keyword


def given(option: str, keyword: str, value: str | os.PathLike[str]) -> str:
    """An argument with its value as the user gives it: ``--resume runs/x`` on the command line,
    ``resume='runs/x'`` from Python."""
    return f"{option} {os.fspath(value)}" if _COMMAND_LINE.get() else f"{keyword}={os.fspath(value)!r}"
