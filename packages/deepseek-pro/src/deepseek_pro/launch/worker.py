"""Entry point of every worker ``deepseek launch`` starts: ``python -m deepseek_pro.launch.worker
ARGS`` is ``python -m deepseek ARGS`` plus four things the launcher relies on.

1. It dies with the launcher: on Linux the kernel sends it SIGKILL when the launcher process ends
   (``prctl(PR_SET_PDEATHSIG)``), so a launcher killed by SIGKILL or the OOM killer leaves no
   worker running on and writing into the run folder. A worker whose launcher is already gone
   when it gets there exits at once.
2. A first heartbeat as the very first action, so the watchdog (and the stop forwarding of
   :mod:`deepseek_pro.launch.stop`) know this rank's pid at once.
3. ``faulthandler`` on SIGUSR2: the watchdog asks a hung rank for the stack of every thread before
   killing it, and the dump lands in this rank's log, shown in the failure report. (SIGUSR1 is a
   stop request, see :mod:`deepseek.training.preemption`.)
4. A rank leaves with its exit code past the interpreter's shutdown (core's
   :func:`deepseek.cli.exits.leave_rank`, which ``deepseek`` run by torchrun uses too), which could
   abort in torch's and gloo's C++ destructors (``terminate called without an active exception``)
   and turn exit code 0 or 2 into SIGABRT; a rank that succeeded runs Python's exit handlers first.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys

from deepseek_pro.launch.env import ENV_LAUNCHER_PID
from deepseek_pro.launch.heartbeat import DUMP_SIGNAL, beat

PR_SET_PDEATHSIG = 1


def die_with_launcher() -> None:
    """Ask the kernel for SIGKILL when the parent (the launcher) ends (Linux; elsewhere a no-op),
    then exit if the launcher is gone already."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return
    launcher = os.environ.get(ENV_LAUNCHER_PID, "")
    if launcher.isdigit() and os.getppid() != int(launcher):
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    """Tie this process to the launcher, beat, arm the stack dump, then run the ``deepseek`` CLI
    with ``argv``."""
    die_with_launcher()
    beat("start")
    if DUMP_SIGNAL is not None:
        faulthandler.register(DUMP_SIGNAL, all_threads=True)
    from deepseek.cli.exits import exit_status, leave_rank
    from deepseek.cli.main import main as deepseek_main

    try:
        deepseek_main(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        leave_rank(exit_status(exc.code))


if __name__ == "__main__":
    main()
