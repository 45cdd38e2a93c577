"""How a message names what the user gave: the command line's option while a command that takes
it runs (:func:`command_line`: ``deepseek train`` around its trainer), else the keyword argument
of the Python call (``Trainer(resume=...)``, ``deepseek.fit(resume=...)``), so each reader is
told what to type. A command that runs the trainer itself, on run folders it picks and resumes
(``deepseek multimodal study``), names its own options instead (:func:`command_terms`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
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


_TERMS: ContextVar[Mapping[str, str] | None] = ContextVar("deepseek_command_terms", default=None)


@contextlib.contextmanager
def command_terms(terms: Mapping[str, str]) -> Iterator[None]:
    """Messages raised inside name the options of a command that runs the trainer itself, on run
    folders it picks and resumes (``deepseek multimodal study``: ``--out``): ``terms`` maps a
    wording of ``deepseek train`` (the ``option`` of :func:`spelled` and :func:`given`: ``--run-dir``,
    ``--run-dir / logging.name``) to the command's (``--out``); ``""`` for a :func:`given` option
    names the value alone (the run folder the command resumed). A wording it leaves out is the
    command line's."""
    line, own = _COMMAND_LINE.set(True), _TERMS.set(dict(terms))
    try:
        yield
    finally:
        _TERMS.reset(own)
        _COMMAND_LINE.reset(line)


def spelled(option: str, keyword: str) -> str:
    """``option`` (``--resume``) under :func:`command_line` (the command's own term under
    :func:`command_terms`), else ``keyword`` (``resume=``)."""
    return (_TERMS.get() or {}).get(option, option) if _COMMAND_LINE.get() else keyword


def given(option: str, keyword: str, value: str | os.PathLike[str] | int) -> str:
    """An argument with its value as the user gives it: ``--resume runs/x`` on the command line,
    ``resume='runs/x'`` from Python (a number: ``--batch 1``, ``batch=1``); under
    :func:`command_terms`, the command's term for ``option`` with the value."""
    shown = value if isinstance(value, int) else os.fspath(value)
    if not _COMMAND_LINE.get():
        return f"{keyword}={shown!r}"
    term = (_TERMS.get() or {}).get(option, option)
    return f"{term} {shown}" if term else str(shown)


_INVOCATION: ContextVar[bool] = ContextVar("deepseek_invocation", default=False)


@contextlib.contextmanager
def invocation() -> Iterator[None]:
    """A ``deepseek`` command runs inside (:func:`deepseek.cli.root.main`, ``deepseek run``'s script
    included): its errors are printed as one line, with a traceback under ``--debug``."""
    token = _INVOCATION.set(True)
    try:
        yield
    finally:
        _INVOCATION.reset(token)


def traceback_hint() -> str:
    """Where the traceback of an error reported in one line is: ``--debug`` under a command
    (:func:`invocation`), else, from Python, the exception's ``__cause__``."""
    return "--debug shows the traceback" if _INVOCATION.get() else "its __cause__ holds the original traceback"


def lookup_hint() -> str:
    """What an unknown component's line points to: ``deepseek plugins list`` under a command
    (:func:`invocation`); from Python also the host, since a plugin registered in-process is found
    only on the host it was registered on (a ``Trainer`` or ``load_model`` given none uses the
    process's)."""
    if _INVOCATION.get():
        return "see 'deepseek plugins list'"
    return "see 'deepseek plugins list'; registered in-process? pass the host= it was registered on"
