"""One trial's child process: ``deepseek ...`` with its output in a log file, which dies with
the tuner.

A trial runs in its own process so that an out-of-memory, a crash or a hang fails that trial,
never the study. On Linux the child asks the kernel to send it SIGTERM when the tuner dies
(``PR_SET_PDEATHSIG``), so a tuner killed with SIGKILL leaves no training running behind it;
``deepseek train`` and ``deepseek launch`` stop cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepseek.parsing import read_tail

STOP_GRACE_S = 30.0
"""Seconds a stopped trial gets to exit after SIGTERM before SIGKILL."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()  # its own process group: a Ctrl-C of the tuner reaches the tuner first


def deepseek_argv(args: Sequence[str]) -> list[str]:
    """``python -m deepseek ARGS`` with this interpreter (the installed editions)."""
    return [sys.executable, "-m", "deepseek", *args]


TAIL_BYTES = 64 << 10
"""How much of a trial's log's end :func:`tail` reads (a long run's log has gigabytes)."""


def tail(path: Path, lines: int = 1) -> str:
    """The last non-empty lines of a log (what a failed trial said last), from its last
    :data:`TAIL_BYTES`; '' for a log that is missing or no regular file."""
    try:
        text = read_tail(path, TAIL_BYTES)
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def plugin_env(host: Any) -> dict[str, str | None]:
    """The tune command's plugin settings (its root options ``--plugins``, ``--disable-plugins``,
    ``--strict-plugins`` ... on top of the environment) as ``DEEPSEEK_*`` variables for a trial's
    child, so that the child loads the plugins the study was checked with, as ``deepseek launch``
    hands its own to its workers; none for a tuner made without a host."""
    return {} if host is None else dict(host.settings.as_env())


def run_child(
    argv: Sequence[str], log: Path, *, poll: Callable[[], bool] | None = None, interval: float = 1.0,
    env: Mapping[str, str | None] | None = None, timeout: float | None = None,
) -> tuple[int, bool]:
    """Run ``argv`` with stdout and stderr in ``log``; every ``interval`` s call ``poll``, and
    when it returns True (a pruned trial) or ``timeout`` passes, stop the child (SIGTERM to its
    group, SIGKILL after :data:`STOP_GRACE_S`). ``env`` goes on top of this process's
    environment (a ``None`` value unsets the variable). Returns ``(exit code, stopped by us)``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    start = time.monotonic()
    with open(log, "wb") as out:
        child = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=child_env, preexec_fn=_die_with_parent)
        stopped = False
        try:
            while True:
                try:
                    return child.wait(timeout=interval), stopped
                except subprocess.TimeoutExpired:
                    pass
                late = timeout is not None and time.monotonic() - start > timeout
                if not stopped and (late or (poll is not None and poll())):
                    stopped = True
                    _signal_group(child, signal.SIGTERM)
                    try:
                        return child.wait(timeout=STOP_GRACE_S), stopped
                    except subprocess.TimeoutExpired:
                        _signal_group(child, signal.SIGKILL)
                        return child.wait(), stopped
        except BaseException:  # Ctrl-C or an error in poll: never leave the child running
            _signal_group(child, signal.SIGKILL)
            child.wait()
            raise


def _signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
