"""``deepseek run SCRIPT.py [ARGS]``: a Python training script as ``__main__``.

A script that trains its own model with :func:`deepseek.fit` runs the same way in one process
(``deepseek run train.py``, or plain ``python train.py``) and in several (``deepseek launch -n 2
-- run train.py --strategy ddp``, with deepseek-pro): the launcher starts ``deepseek run`` on
every rank, and the strategy finds its rank in the environment the launcher sets. The script's
``sys.argv`` is ``[SCRIPT, *ARGS]`` and its folder is first on ``sys.path``, as with ``python
SCRIPT``, while it runs; after it, however it ended, both are as they were before (the same lists,
with the same items), so that a caller of :func:`deepseek.cli.main.main` finds its interpreter
as it left it, and the script's ``atexit`` handlers see them as the script left them. Errors the script raises as :class:`~deepseek.errors.UsageError` are one line with
exit code 2, like every command's; any other exception is the script's own, and prints the
script's traceback with exit code 1, as ``python SCRIPT`` does. SIGTERM or SIGUSR1 while the script
runs outside ``deepseek.fit`` (before it, between two runs, after one: nothing to save) ends the
script as Ctrl-C would (:class:`~deepseek.training.preemption.ScriptSignals`), then the command
with one line and exit code 75; inside ``fit`` the run stops after its step with a checkpoint and
``fit`` returns (``stopped_by``). The script's :func:`deepseek.fit` (and
``deepseek.create_*``) use the process's plugin host, built from the ``DEEPSEEK_*`` variables:
the plugins the root options choose (``deepseek --plugins pro run train.py``) reach it through
those variables, set while the script runs, as ``deepseek launch`` gives them to its workers
(:func:`script_environment`). Nothing here imports torch.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import click

from deepseek.errors import DeepseekError, UsageError

_IN_TURN = threading.RLock()
"""Held while a script runs: ``sys.argv``, ``sys.path``, ``sys.modules["__main__"]``, the plugin
variables and the ``atexit`` handlers a script leaves are the process's, so two ``deepseek run``
of one process in two threads (``main(["run", ...])``) run their scripts one after the other, each
with its own; the same thread may nest them (a script that runs another through ``main``), but a
script that starts another run in a thread of its own and waits for it waits for good."""


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("script", metavar="SCRIPT.py")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(script: str, args: tuple[str, ...]) -> int | None:
    """Run a Python script (one that calls deepseek.fit) as __main__ with ARGS. SIGTERM or
    SIGUSR1 outside deepseek.fit ends it with exit code 75 (inside, fit stops after the current
    step with a checkpoint and returns).

    Example: deepseek launch -n 2 -- run examples/own_model/train.py --strategy ddp
    """
    import sys
    from pathlib import Path

    path = Path(script)
    if not path.is_file():
        from deepseek.paths import broken_link

        what = "is a folder" if path.is_dir() else broken_link(path) or "does not exist"
        raise UsageError(f"run: {script!r} {what}; give the path of a Python script, e.g. deepseek run train.py")
    if path.suffix != ".py":
        raise UsageError(f"run: {script!r} is not a .py file; give the path of a Python script")
    code = _compiled(path, script)
    from deepseek.training.preemption import (
        EXIT_PREEMPTED,
        ScriptSignals,
        StopRequested,
        script_stopped_line,
    )

    with ScriptSignals() as signals:
        if signals.received is not None:  # the console entry recorded it: the script does not start
            click.echo(script_stopped_line(signals.received, started=False), err=True)
            return EXIT_PREEMPTED
        try:
            with _IN_TURN, script_environment(), _argv_and_path(path, args):
                _run_as_main(code, path, signals)
        except StopRequested as stop:  # outside deepseek.fit: the script unwound, nothing to save
            click.echo(script_stopped_line(stop.signal_name, started=True), err=True)
            return EXIT_PREEMPTED
        except DeepseekError:
            raise  # deepseek's own errors: one line, as from every command
        except Exception as exc:
            _print_traceback(exc, path)
            sys.exit(1)
    return None


@contextlib.contextmanager
def _argv_and_path(path: Any, args: tuple[str, ...]) -> Iterator[None]:
    """``sys.argv`` is ``[SCRIPT, *ARGS]`` and the script's folder first on ``sys.path`` while the
    script runs, as ``python SCRIPT`` has them; after, however the script ended (returned, raised,
    exited) and whatever it did to them, ``sys.argv`` is the list it was and ``sys.path`` the list it
    was with the items it had (a caller holding either sees no change). The ``atexit`` handlers the
    script registered run, at the process's exit, with both as the script left them (:class:`_AtExit`).
    A script that left no handler of its own registered leaves nothing registered behind it: a
    process that runs scripts in turn (``main(["run", ...])``, tests) does not pile up a pair of
    handlers, each holding its script's lists, per run. The script's own are the handlers registered
    at its end that were not before it (:func:`_registered`), however it reached ``atexit.register``
    (``from atexit import register`` in a module imported before, a library's helper): a script that
    unregisters one registered before it (a library's) and registers its own has one. The
    ``atexit`` module itself is left as it is (no function of it swapped for the while)."""
    import atexit
    import sys

    argv, search_path = sys.argv, sys.path
    entries = list(search_path)
    sys.argv = [str(path), *args]
    search_path.insert(0, str(path.resolve().parent))
    at_exit = _AtExit()
    leave = at_exit.leave
    before = _registered()
    atexit.register(leave)  # registered before the script's handlers: runs after them
    try:
        yield
    finally:
        if not _added(before, _registered(), leave):  # none of the script's to run at exit: none of ours
            atexit.unregister(leave)
        else:
            at_exit.script_view = list(sys.argv), list(sys.path)
            atexit.register(at_exit.enter)  # registered after the script's handlers: runs before them
        sys.argv = argv
        search_path[:] = entries
        sys.path = search_path


def _registered() -> list[Any] | None:
    """The functions registered with ``atexit`` now, or None where they cannot be read. ``atexit``
    offers no call that lists them, but ``atexit.unregister(f)`` removes every registered function
    equal to ``f`` (documented: "equality comparisons (==) are used"), so it compares ``f`` with
    each: an ``f`` equal to none, which notes what it is compared with, reads them all and removes
    none. A handler whose own ``==`` answers for a stranger (False rather than NotImplemented) is
    not seen; one whose ``==`` raises makes them unreadable (None)."""
    import atexit

    seen: list[Any] = []

    class Reader:
        __hash__ = None  # type: ignore[assignment]

        def __eq__(self, other: object) -> bool:
            seen.append(other)
            return False

    try:
        atexit.unregister(Reader())
    except Exception:  # noqa: BLE001 - a handler's own __eq__ failed: unknown, so kept (see _added)
        return None
    return seen


def _added(before: list[Any] | None, after: list[Any] | None, ours: Any) -> bool:
    """Whether ``after`` holds a handler that ``before`` did not (an object registered twice counts
    twice), ``ours`` aside; True where either could not be read: the pair of :class:`_AtExit` then
    stays, as for a script with handlers of its own. (``before`` holds its objects: no id is reused.)"""
    if before is None or after is None:
        return True
    counts = collections.Counter(id(f) for f in before)
    for f in after:
        if f is ours:
            continue
        if not counts[id(f)]:
            return True
        counts[id(f)] -= 1
    return False


class _AtExit:
    """``sys.argv`` and ``sys.path`` for the script's ``atexit`` handlers: Python runs the handlers
    last registered first, so :meth:`enter`, registered when the script ended, runs just before
    those the script registered and :meth:`leave`, registered before it started, just after them.
    An ``atexit`` handler of the script that imports a module of its folder (``import helpers``,
    not imported while it ran) finds it there, as under ``python SCRIPT``; the caller's own code and
    handlers see ``sys.argv`` and ``sys.path`` as they were."""

    def __init__(self) -> None:
        self.script_view: tuple[list[str], list[str]] | None = None
        self._before: tuple[list[str], list[str]] | None = None

    def enter(self) -> None:
        import sys

        if self.script_view is not None:
            self._before = sys.argv, list(sys.path)
            sys.argv, sys.path[:] = list(self.script_view[0]), self.script_view[1]

    def leave(self) -> None:
        import sys

        if self._before is not None:
            sys.argv, sys.path[:] = self._before[0], self._before[1]


@contextlib.contextmanager
def script_environment() -> Iterator[None]:
    """While the script runs, the ``DEEPSEEK_*`` plugin variables say what the command's host was
    built with (:meth:`~deepseek.plugins.settings.PluginSettings.as_env`), when its root options
    changed it from the environment's: the script's ``deepseek.fit`` builds the process's host
    from them, its subprocesses inherit them. Restored after. (Plugins registered in-process on a
    host given to ``main(host=...)`` are not settings: the script does not see them.)"""
    import os

    from deepseek.cli.context import command_host
    from deepseek.plugins.settings import PluginSettings

    settings = command_host().settings
    changed = {} if settings == PluginSettings.from_env() else settings.as_env()
    before = {key: os.environ.get(key) for key in changed}
    try:
        for key, value in changed.items():
            _set_env(key, value)
        yield
    finally:
        for key, value in before.items():
            _set_env(key, value)


def _set_env(key: str, value: str | None) -> None:
    import os

    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _print_traceback(exc: Exception, path: object) -> None:
    """The traceback ``python SCRIPT`` prints: from the script's first frame (this
    command's frames left out)."""
    import traceback
    from pathlib import Path

    script = Path(str(path)).resolve()
    tb = exc.__traceback__
    while tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve() != script:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)


def _compiled(path: object, script: str) -> Any:
    """The script's code, compiled from one bounded read of it (a regular file, 16 MiB at most):
    what runs is the text checked here, not the path read again (a FIFO put there after the
    check waited for a writer for good). A script that cannot be read or compiled (a syntax
    error, bytes that are not its encoding, a null byte) is bad input: one line naming it and
    the line, before it runs."""
    from deepseek.parsing import read_file

    try:
        return compile(read_file(str(path)), str(path), "exec", dont_inherit=True)
    except OSError as exc:
        raise UsageError(f"run: {script!r} cannot be read ({exc.strerror or exc}); give a readable Python script") from None
    except (SyntaxError, ValueError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        what = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise UsageError(f"run: {script!r} is not valid Python{where} ({' '.join(str(what).split())}); "
                         "fix the script") from None


def _run_as_main(code: Any, path: object, signals: Any) -> None:
    """Run ``code`` as ``python SCRIPT`` runs a script (as ``runpy.run_path`` did, from the code
    rather than the path): in a fresh module ``__main__``, whose ``__file__`` is the script's path,
    put in ``sys.modules`` for the while (pickle and multiprocessing find the script's classes
    there), and ``sys.modules`` after as before: the module ``__main__`` before it put back, or
    none where there was none (an embedding program's, a caller's that removed it), whatever
    the script did to that entry. ``signals`` (:class:`~deepseek.training.preemption.ScriptSignals`)
    is armed while the script's code runs: a stop signal then raises in it."""
    import sys
    import types

    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=str(path), __cached__=None, __loader__=None, __package__=None, __spec__=None)
    before = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        signals.armed = True
        exec(code, module.__dict__)  # noqa: S102 - the user's own script, as python SCRIPT would run it
    finally:
        signals.armed = False
        if before is None:
            sys.modules.pop("__main__", None)
        else:
            sys.modules["__main__"] = before
