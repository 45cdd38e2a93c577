"""Entry point of every worker ``deepseek launch`` starts: ``python -m deepseek_pro.launch.worker
ARGS`` is ``python -m deepseek ARGS`` plus two things the launcher relies on.

1. A first heartbeat as the very first action, so the watchdog knows this rank's pid at once.
2. ``faulthandler`` on SIGUSR1: the watchdog asks a hung rank for the stack of every thread
   before killing it, and the dump lands in this rank's log, shown in the failure report.
"""

from __future__ import annotations

import faulthandler
import signal
import sys

from deepseek_pro.launch.heartbeat import beat


def main(argv: list[str] | None = None) -> None:
    """Beat, arm the stack dump, then run the ``deepseek`` CLI with ``argv``."""
    beat("start")
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    from deepseek.cli.main import main as deepseek_main

    deepseek_main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
