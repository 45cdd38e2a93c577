"""The live job holding an interrupted trial's run folder, and waiting for it to let the folder go.

A tuner killed with SIGKILL leaves its trial's training running for a while: the child gets
SIGTERM from the kernel (``PR_SET_PDEATHSIG``, :mod:`deepseek_enterprise.tune.process`) and, as
``deepseek train`` does on SIGTERM, finishes its step, writes a checkpoint and exits, within
``train.preempt_grace_s``. A tuner restarted at once finds that folder locked (``.lock``,
:mod:`deepseek.training.run_lock`). When the holder is such a training (a running process on this
machine whose ``--run-dir`` is that folder) the re-run waits for it, bounded, and then resumes from
the checkpoint it wrote. Any other holder (another machine's, a process stopped with SIGSTOP or
Ctrl-Z, one training another folder) is not waited for.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from deepseek.parsing import loads_json, read_text
from deepseek.training.run_lock import HOLDER_MAX, try_lock

EXIT_MARGIN_S = 10.0
"""Seconds granted beyond the training's ``train.preempt_grace_s`` for its process to exit."""


def training_holder(run: Path, lock: Path) -> int | None:
    """The pid of the process holding ``lock`` when it is a running training of ``run`` on this
    machine (its command line's ``--run-dir`` is ``run``; not stopped, not a zombie), else
    ``None``: another host's, one whose pid is not written yet, or anything else."""
    try:
        info = loads_json(read_text(lock, HOLDER_MAX))
        pid, host = int(info["pid"]), info["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return None
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        cwd = Path(os.readlink(proc / "cwd"))
    except (OSError, IndexError):  # gone, or not Linux
        return None
    if state in ("T", "t", "Z", "X"):  # stopped (SIGSTOP, a debugger) or ended: it will not let go
        return None
    folders = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--run-dir"]
    if not any((cwd / folder).resolve() == run.resolve() for folder in folders):
        return None
    return pid


def wait_for_release(run: Path, lock: Path, pid: int, seconds: float, interval: float = 0.1) -> int | None:
    """Take ``lock`` once process ``pid`` lets it go, within ``seconds``: the locked descriptor
    (as :func:`deepseek.training.run_lock.try_lock` returns it), or ``None`` when the time ran out
    or the holder stopped being that running training (stopped by hand, replaced by another)."""
    deadline = time.monotonic() + seconds
    while True:
        fd = try_lock(lock)
        if fd is not None:
            return fd
        if time.monotonic() >= deadline or training_holder(run, lock) != pid:
            return try_lock(lock)
        time.sleep(interval)
