"""The CLI's display of a warning (:func:`show_warning_on_one_line`): ``warning: <message>`` on
one line of stderr, none for developers (:data:`DEVELOPER_WARNINGS`) unless Python was asked for
that warning (:func:`asked_for`), installed for a command's run by :func:`one_line_warnings`."""

from __future__ import annotations

import builtins
import contextlib
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click

from deepseek.errors import one_line

DEVELOPER_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, SyntaxWarning)
"""Warnings for whoever maintains the code that raised them, never shown to the user of a command:
Python hides the deprecations outside ``__main__`` by default (a test runner shows them), and a
``SyntaxWarning`` (an invalid escape sequence; a ``DeprecationWarning`` before Python 3.12) is
raised while a module's source compiles, when no cached bytecode is there, e.g. torchao's on
``PYTHONDONTWRITEBYTECODE=1``. Neither is about the command or its input, and as a line of its
own it came before the command's one-line error. Warnings meant for users are ``UserWarning`` or
``FutureWarning`` (:class:`deepseek.config.load.DeprecatedConfigWarning`); this repository's own
code is kept free of invalid escapes by its linter (ruff's W605). A user who asks Python for one
of these (a ``-W`` or ``PYTHONWARNINGS`` filter that shows it, or Python's development mode:
:func:`asked_for`) gets it, one line each."""

_ACTIONS = ("default", "always", "ignore", "module", "once", "error")
"""The actions of a warnings filter, in the order Python matches an abbreviated one (``-W i``)."""


def show_warning_on_one_line(message: Any, category: type, filename: str, lineno: int, *_: Any, **__: Any) -> None:
    """``warnings.showwarning`` while a command runs: ``warning: <message>`` on one line of
    stderr; a developer warning (:data:`DEVELOPER_WARNINGS`) only where Python was asked for it
    (:func:`asked_for`)."""
    if issubclass(category, DEVELOPER_WARNINGS) and not asked_for(category, str(message), filename, lineno):
        return
    click.secho(f"warning: {one_line(str(message))}", fg="yellow", err=True)


class _OneLineWarnings:
    """Who holds ``warnings.showwarning`` as :func:`show_warning_on_one_line`. It is the process's,
    as Python's warnings filters are, so every in-process ``main()`` (two in threads, a notebook's)
    shares this one holder (:data:`_SHOWN`): the first call to enter installs the one-line display
    under a ``warnings.catch_warnings()`` and the last to leave restores what was there (the
    display and the filters). Each call's own ``catch_warnings`` let the first to leave restore
    the display while the other still ran, and the last to leave put the one-line display back
    for good."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._held: Any = None

    @contextlib.contextmanager
    def shown(self) -> Iterator[None]:
        with self._lock:
            if self._calls == 0:
                self._held = warnings.catch_warnings()
                self._held.__enter__()
                warnings.showwarning = show_warning_on_one_line  # type: ignore[assignment]
            self._calls += 1
        try:
            yield
        finally:
            with self._lock:
                self._calls -= 1
                if self._calls == 0:
                    held, self._held = self._held, None
                    held.__exit__(None, None, None)


_SHOWN = _OneLineWarnings()


def one_line_warnings() -> contextlib.AbstractContextManager[None]:
    """The block (a command's run, :func:`deepseek.cli.root.main`) within which warnings show as
    :func:`show_warning_on_one_line` shows them; what was there before comes back when the last
    such block in the process ends."""
    return _SHOWN.shown()


def asked_for(category: type, text: str, filename: str, lineno: int) -> bool:
    """Whether the user asked Python to show a warning of ``category`` whose message is ``text``,
    raised at ``filename:lineno``: as Python applies its filters, the last of the user's
    (``sys.warnoptions``: ``PYTHONWARNINGS``'s, then each ``-W``'s) that matches the warning
    decides (any action but ``ignore`` shows it: ``-W default::DeprecationWarning`` shows the
    deprecations, not the ``SyntaxWarning``; ``-W ignore::UserWarning`` none of them); where none
    matches, it shows in Python's development mode (``-X dev``, ``PYTHONDEVMODE=1``, which
    adds ``default`` before the user's filters). An option Python ignored as invalid at start-up
    (it said so then) decides nothing."""
    for option in reversed(sys.warnoptions):
        found = _filter(option)
        if found is not None and found.matches(category, text, filename, lineno):
            return found.action != "ignore"
    return bool(sys.flags.dev_mode)


@dataclass(frozen=True)
class _Filter:
    """One ``-W`` option (``action:message:category:module:lineno``) as Python's warnings module
    read it at start-up."""

    action: str
    message: str
    category: type
    module: str
    lineno: int

    def matches(self, category: type, text: str, filename: str, lineno: int) -> bool:
        """Whether this filter applies to the warning, as Python matches a ``-W`` filter: its
        category or a subclass, a message starting with the filter's (case ignored), raised in
        the filter's module at its line. The module is known here by its file: a module whose
        file ``filename`` is, or ``filename`` less its ``.py`` (``warn_explicit``'s name when
        given none); so a warning Python raises while it compiles a module's source counts as
        that module's, where Python's own filter names it by its file only."""
        return (issubclass(category, self.category)
                and re.match(re.escape(self.message), text, re.IGNORECASE) is not None
                and self.lineno in (0, lineno)
                and (not self.module or self.module in _module_names(filename)))


def _filter(option: str) -> _Filter | None:
    """``option`` as Python's warnings module reads a ``-W`` option (an abbreviated action, an
    empty category: ``Warning``, a category by its builtin name or ``module.Name``), or None for
    one it refused (too many fields, an unknown action or category, a negative line)."""
    parts = [part.strip() for part in option.split(":")]
    if len(parts) > 5:
        return None
    action, message, category_name, module, line = parts + [""] * (5 - len(parts))
    action = "default" if not action else "always" if action == "all" else next(
        (a for a in _ACTIONS if a.startswith(action)), "")
    category = _category(category_name)
    if not action or category is None or (line and not (line.isdigit() and line.isascii())):
        return None
    return _Filter(action, message, category, module, int(line or 0))


def _category(name: str) -> type | None:
    """The warning category a ``-W`` option names (``""``: ``Warning``), found where Python's
    start-up imported it (builtins, or its module in ``sys.modules``); None where there is none."""
    if not name:
        return Warning
    module_name, _, attribute = name.rpartition(".")
    module = builtins if not module_name else sys.modules.get(module_name)
    found = getattr(module, attribute, None) if module is not None else None
    return found if isinstance(found, type) and issubclass(found, Warning) else None


def _module_names(filename: str) -> set[str]:
    """The names a filter's module is matched against for a warning raised in ``filename``: each
    imported module's whose file it is (``warnings.warn`` names the caller's module), and the
    file name less its ``.py`` (``warnings.warn_explicit`` given no module)."""
    names = {name for name, module in list(sys.modules.items()) if getattr(module, "__file__", None) == filename}
    return names | {filename[:-3] if filename.lower().endswith(".py") else filename}
