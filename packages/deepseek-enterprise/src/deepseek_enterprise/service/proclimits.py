"""Host limits on a process the server starts for a job: the job's wrapper (``executor``) and a
``tune`` job's study check at submit (``studycheck``).

What the process is held to: the job's cgroup joined (``cgroup_procs``: its ``cgroup.procs``), no
core files, ``RLIMIT_AS`` ``memory_bytes`` where it joins no cgroup (a cgroup's ``memory.max`` is
the memory limit then, a total), ``RLIMIT_CPU`` ``cpu_seconds``.

How (:func:`spawn`): the server's API and scheduler run in threads, where code run between fork
and exec (``subprocess``'s ``preexec_fn``) may deadlock on a lock another thread held at the fork.
So the new process first runs the script :mod:`~deepseek_enterprise.service.limitexec`, ``python
-I -S limitexec.py FD MEMORY CPU PROCS -- ARGV``: a fresh interpreter of one thread, without site,
that imports nothing beyond ``os``, ``resource`` and ``sys``, applies the limits to its own
process and then replaces itself with ``ARGV`` (``os.execv``: the same process, its limits,
session and cgroup kept), so the program runs under them from its first instruction, as it did
with ``preexec_fn``. What it could not do (the kernel refused the cgroup or a limit, ``ARGV``
cannot be run) it writes to the pipe ``FD`` and exits with ``limitexec.REFUSED``; a successful
``execv`` closes that pipe unwritten. :func:`spawn` reads the pipe to its end before it returns:
the limits apply, or it raises :class:`LimitsRefused` with the reason. It costs one interpreter
start without site (10-20 ms) per process started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepseek_enterprise.service import limitexec


class LimitsRefused(OSError):
    """The new process could not be held to its limits, or could not run its program: nothing of
    the program ran (the message is the kernel's reason)."""


def spawn(argv: Sequence[str], memory_bytes: int | None, cpu_seconds: int | None, cgroup_procs: Path | None, *,
          pass_fds: Sequence[int] = (), **popen: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(argv, **popen)`` held to the limits (module docstring) once it returns
    (``cgroup_procs`` None: no cgroup; ``memory_bytes``, ``cpu_seconds`` None: no such limit);
    :class:`LimitsRefused` when they could not be applied."""
    read, write = os.pipe()
    try:
        limits = [str(value) if value is not None else "-" for value in (memory_bytes, cpu_seconds, cgroup_procs)]
        proc = subprocess.Popen([sys.executable, "-I", "-S", limitexec.__file__, str(write), *limits, "--", *argv],
                                pass_fds=(*pass_fds, write), **popen)
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    with os.fdopen(read, "rb") as pipe:
        why = pipe.read()
    if why:
        proc.communicate()  # it exits at once (REFUSED), having written nothing else
        raise LimitsRefused(why.decode("utf-8", "replace"))
    return proc


