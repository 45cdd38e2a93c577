"""The console entry point of ``deepseek`` (:func:`main`), kept apart from the command line itself
(:mod:`deepseek.cli.root`, whose names are reachable from here too) so that ``deepseek train`` and
``deepseek launch`` (and ``deepseek run``) take stop signals before click, the plugin host and torch are imported: a
SIGTERM in those first tenths of a second is recorded (exit code 75 once the command runs, as
later), not a death by the signal (docs/distributed.md). Nothing here imports more than the
standard library before that.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepseek.plugins.host import PluginHost

SIGNALLED_COMMANDS = ("train", "launch", "run")
"""Commands that stop on SIGTERM / SIGUSR1 with exit code 75 (``deepseek_pro``'s ``launch``; ``run``
outside its script's ``deepseek.fit``, whose run stops with a checkpoint and returns)."""

LAUNCHER_COMMANDS = ("launch",)
"""Commands whose process is a job's launcher (``deepseek_pro``'s ``launch``): as the process's
entry point it ends through :func:`deepseek.cli.exits.leave_launcher`, its exit close to the report
it printed last."""

_VALUE_OPTIONS = ("--plugins", "--disable-plugins")
"""The root options that take a value (the next argument, unless given as ``--plugins=A``)."""


def command_name(args: list[str]) -> str | None:
    """The command ``deepseek ARGS`` runs, read as the root group reads it: the first argument that
    is neither a root option nor a root option's value (``None`` when there is none)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg
        i += 2 if arg in _VALUE_OPTIONS else 1
    return None


def main(argv: list[str] | None = None, *, host: PluginHost | None = None) -> None:
    """Console entry point: run ``deepseek ARGV`` and exit with its status
    (:func:`deepseek.cli.root.main`). As the process's entry point (no ``argv``, no ``host``) of a
    command in :data:`SIGNALLED_COMMANDS`, the stop signals are recorded from here on
    (:func:`deepseek.training.preemption.early_signals`; the command's own scope takes a signal
    over)."""
    held: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if argv is None and host is None and command_name(sys.argv[1:]) in SIGNALLED_COMMANDS:
        from deepseek.training.preemption import early_signals

        held = early_signals()
    with held:
        from deepseek.cli.root import main as run

        run(argv, host=host)


def __getattr__(name: str) -> Any:
    # the command line's names (cli, split_debug, out_of_memory, exit_status, ...) are root.py's;
    # the import system's own probes (``__path__``) must not import it
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from deepseek.cli import root

    return getattr(root, name)
