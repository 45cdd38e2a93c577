"""The script that starts a process held to its limits, run by
:func:`deepseek_enterprise.service.proclimits.spawn` (which says why): ``python -I -S limitexec.py FD
MEMORY CPU PROCS -- ARGV`` applies the limits to its own process, then replaces itself with
``ARGV``; what it could not do goes to the pipe ``FD``. It imports nothing beyond ``os``,
``resource`` and ``sys``, and runs without site: its start is all it costs.
"""

import os
import resource
import sys

REFUSED = 126
"""The exit code of a start whose limits were refused (its reason went to the pipe)."""


def _applied(memory_bytes: int | None, cpu_seconds: int | None, cgroup_procs: str | None) -> None:
    """Hold this process to the limits (module docstring); OSError / ValueError when refused."""
    if cgroup_procs is not None:  # the memory limit is the cgroup's (a total), not RLIMIT_AS
        fd = os.open(cgroup_procs, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.write(fd, str(os.getpid()).encode("ascii"))
        finally:
            os.close(fd)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_bytes is not None and cgroup_procs is None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if cpu_seconds is not None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))


def _main(argv: list[str]) -> int:
    """The script (module docstring): ``FD MEMORY CPU PROCS -- ARGV``, ``-`` for a limit not set."""
    report = int(argv[0])
    memory, cpu, procs = (None if value == "-" else value for value in argv[1:4])
    program = argv[5:]
    try:
        _applied(None if memory is None else int(memory), None if cpu is None else int(cpu), procs)
    except (OSError, ValueError) as exc:
        os.write(report, f"the limits were refused: {exc}".encode("utf-8", "replace"))
        return REFUSED
    os.set_inheritable(report, False)  # closed by a successful exec, unwritten: the parent reads its end
    try:
        os.execv(program[0], program)
    except OSError as exc:
        os.write(report, f"{program[0]} could not be run: {exc}".encode("utf-8", "replace"))
    return REFUSED


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
