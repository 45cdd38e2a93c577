"""cgroup v2 limits for local jobs, where the server may write a cgroup v2 subtree.

:func:`detect` decides once, at server start, which way host limits are applied:

- ``--cgroup DIR``: DIR, a cgroup v2 directory delegated to the server's user with no processes
  of its own (created if its parent is cgroup v2). Jobs' cgroups are made under it. If it cannot
  be used the server does not start (one line saying why).
- ``--cgroup auto`` (the server's default): the server's own cgroup (``/proc/self/cgroup``) if it
  is cgroup v2, writable and offers the ``memory`` controller (``pids`` and ``cpu`` are used
  when offered too). As cgroup v2 lets
  only a cgroup without processes hand controllers to its children, the server first moves
  itself into a child ``deepseek-server``, then puts jobs under ``deepseek-jobs``. When any step
  fails the server uses rlimits and says why (``Detection.reason``).
- ``--cgroup none``: rlimits only.

Per job (:meth:`Cgroups.create`) a cgroup ``job-<id>`` with ``memory.max`` = the tenant's
``memory-bytes`` (a total over all the job's processes; ``memory.swap.max`` 0 so it is not
swapped instead), ``cpu.max`` = ``cpus`` x 100 ms per 100 ms (when the ``cpu`` controller is
there), ``pids.max`` = :data:`PIDS_MAX` (when the ``pids`` controller is there; without it the
number of processes is not limited, which the job's first log line says). The executor puts the
job's wrapper in it before the wrapper runs (``proclimits``), so everything the job starts is
inside. A ``tune`` job's study check at submit (``studycheck``) gets a cgroup of its own likewise,
``check-<pid>-<n>``, with the limits of the job it checks. When the job ends, :meth:`Cgroups.oom_kills`
reads ``memory.events`` (the kernel's OOM kills tell an out-of-memory failure apart) and
:meth:`Cgroups.remove` kills what is left in it (``cgroup.kill``) and removes it.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from deepseek.errors import UsageError

NEEDED = ("memory",)
"""Controllers without which cgroups are not used."""
OPTIONAL = ("pids", "cpu")
"""Used when offered: without ``cpu`` the tenant's ``cpus`` is not enforced, without ``pids`` the
number of processes is not limited (container runtimes often delegate ``memory`` alone)."""
PIDS_MAX = 4096
"""Processes and threads a job may have at once (cgroup ``pids.max``)."""
CPU_PERIOD_US = 100_000


def cgroup2_mounts(mountinfo: str) -> list[Path]:
    """The cgroup v2 mount points listed in ``/proc/self/mountinfo`` text."""
    out = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) >= 5 and rest and rest[0] == "cgroup2":
            out.append(Path(fields[4].replace("\\040", " ")))
    return out


def own_cgroup(proc_cgroup: str) -> str | None:
    """The cgroup v2 path of ``/proc/self/cgroup`` text (the ``0::/path`` line), or None."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            path = line[3:].strip()
            return path if path.startswith("/") and ".." not in path.split("/") else None
    return None


def _read(path: Path) -> str:
    return path.read_text(encoding="ascii", errors="replace").strip()


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def _enable(folder: Path, controllers: tuple[str, ...]) -> None:
    """Let ``folder``'s children use ``controllers`` (OSError: EBUSY when it holds processes)."""
    have = set(_read(folder / "cgroup.subtree_control").split())
    missing = [c for c in controllers if c not in have]
    if missing:
        _write(folder / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


@dataclass(frozen=True)
class Cgroups:
    """A cgroup v2 directory (controllers enabled for its children) whose children are jobs."""

    parent: Path
    controllers: tuple[str, ...]

    def path(self, job_id: int | str) -> Path:
        """The cgroup of the job ``job_id`` (``job-<id>``), or of a process that is no job by its name
        (a study check's ``check-<pid>-<n>``); :meth:`create`, :meth:`oom_kills` and :meth:`remove`
        take either."""
        return self.parent / (job_id if isinstance(job_id, str) else f"job-{int(job_id)}")

    def create(self, job_id: int | str, memory_bytes: int | None, cpus: float | None) -> Path:
        """The job's cgroup with its limits written (OSError when the kernel refuses)."""
        path = self.path(job_id)
        try:
            path.mkdir()
        except FileExistsError:  # left by a crash: reuse it only if empty
            if _read(path / "cgroup.procs"):
                raise OSError(errno.EBUSY, f"{path} exists and still holds processes") from None
        _write(path / "memory.max", str(memory_bytes) if memory_bytes is not None else "max")
        if (path / "memory.swap.max").exists():
            _write(path / "memory.swap.max", "0" if memory_bytes is not None else "max")
        if "pids" in self.controllers:
            _write(path / "pids.max", str(PIDS_MAX))
        if "cpu" in self.controllers:
            quota = "max" if cpus is None else str(max(1000, round(cpus * CPU_PERIOD_US)))
            _write(path / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        return path

    def describe(self, job_id: int, memory_bytes: int | None, cpus: float | None) -> str:
        cpu = "cpu.max not available (no cpu controller)" if "cpu" not in self.controllers else (
            f"cpu.max={cpus:g} CPU(s)" if cpus is not None else "cpu.max=max")
        pids = f"pids.max={PIDS_MAX}" if "pids" in self.controllers else "pids.max not available (no pids controller)"
        return (f"cgroup v2 {self.path(job_id)}: memory.max={memory_bytes if memory_bytes is not None else 'max'}, "
                f"{cpu}, {pids}")

    def oom_kills(self, job_id: int | str) -> int:
        """How many processes of the job the kernel killed for memory (0 if unknown)."""
        try:
            text = _read(self.path(job_id) / "memory.events")
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def remove(self, job_id: int | str, wait_s: float = 5.0) -> bool:
        """Kill what is left of the job and remove its cgroup; False if it could not be removed."""
        path = self.path(job_id)
        if not path.is_dir():
            return True
        deadline = time.monotonic() + wait_s
        try:
            if _read(path / "cgroup.procs") and (path / "cgroup.kill").exists():
                _write(path / "cgroup.kill", "1")
            while True:
                try:
                    path.rmdir()
                    return True
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        return False
                    time.sleep(0.05)
        except OSError:
            return False


@dataclass(frozen=True)
class Detection:
    """The outcome of :func:`detect`: cgroups to use, or None and why rlimits apply."""

    cgroups: Cgroups | None
    reason: str
    holds_jobs: bool = True
    """Whether the server's jobs run under these limits too (the local executor's, :func:`detect`'s);
    False where they hold only what the server runs on its own machine for a job (a ``tune`` job's
    study check, ``studycheck``) while its jobs run elsewhere, under their cluster's limits
    (``Executor.local_limits``' default)."""

    def summary(self) -> str:
        if self.cgroups is not None:
            return f"cgroup v2 under {self.cgroups.parent} ({', '.join(self.cgroups.controllers)})"
        return f"rlimits ({self.reason})"


def _offered(folder: Path) -> tuple[str, ...] | str:
    """The controllers ``folder`` offers among the needed and optional ones, or why not usable."""
    try:
        offered = set(_read(folder / "cgroup.controllers").split())
    except OSError as exc:
        return f"{folder} is not a cgroup v2 directory ({exc.strerror})"
    missing = [c for c in NEEDED if c not in offered]
    if missing:
        have = ", ".join(sorted(offered)) or "none"
        return f"cgroup v2 at {folder} offers {have}; {', '.join(missing)} needed"
    if not os.access(folder, os.W_OK):
        return f"cgroup v2 at {folder} is not writable by this user"
    return tuple(c for c in (*NEEDED, *OPTIONAL) if c in offered)


def _jobs_under(folder: Path, controllers: tuple[str, ...]) -> Cgroups:
    _enable(folder, controllers)
    jobs = folder / "deepseek-jobs"
    jobs.mkdir(exist_ok=True)
    _enable(jobs, controllers)
    return Cgroups(jobs, controllers)


def _auto(proc_cgroup: str, mountinfo: str, pid: int) -> Detection:
    mounts = cgroup2_mounts(mountinfo)
    own = own_cgroup(proc_cgroup)
    if not mounts or own is None:
        return Detection(None, "no cgroup v2 hierarchy is mounted")
    folder = mounts[0] / own.lstrip("/")
    offered = _offered(folder)
    if isinstance(offered, str):
        return Detection(None, offered)
    try:
        return Detection(_jobs_under(folder, offered), "")
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            return Detection(None, f"cannot enable controllers in {folder}: {exc.strerror}")
    # The server's cgroup holds processes: move the server into a child of its own first.
    server = folder / "deepseek-server"
    try:
        server.mkdir(exist_ok=True)
        _write(server / "cgroup.procs", str(pid))
    except OSError as exc:
        return Detection(None, f"cannot move the server into {server}: {exc.strerror}")
    try:
        return Detection(_jobs_under(folder, offered), "")
    except OSError as exc:
        try:
            _write(folder / "cgroup.procs", str(pid))  # back where it was
        except OSError:
            pass
        why = "other processes share the server's cgroup" if exc.errno == errno.EBUSY else exc.strerror
        return Detection(None, f"cannot enable controllers in {folder}: {why}")


def detect(spec: str, *, proc: Path = Path("/proc/self")) -> Detection:
    """Which limits apply (module docstring); ``UsageError`` when ``--cgroup DIR`` is unusable."""
    if spec == "none":
        return Detection(None, "--cgroup none")
    if spec == "auto":
        try:
            proc_cgroup = (proc / "cgroup").read_text(encoding="utf-8", errors="replace")
            mountinfo = (proc / "mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return Detection(None, f"cannot read {proc}/cgroup: {exc.strerror}")
        return _auto(proc_cgroup, mountinfo, os.getpid())
    folder = Path(spec)
    if not folder.is_absolute() or ".." in folder.parts:
        raise UsageError(f"--cgroup {spec!r}: give auto, none or an absolute cgroup v2 directory")
    try:
        if not folder.exists():
            offered = _offered(folder.parent)
            if isinstance(offered, str):
                raise UsageError(f"--cgroup {spec}: cannot create it: {offered}")
            folder.mkdir()
        offered = _offered(folder)
        if isinstance(offered, str):
            raise UsageError(f"--cgroup {spec}: {offered}")
        _enable(folder, offered)
    except OSError as exc:
        why = "it holds processes of its own; give an empty delegated cgroup" if exc.errno == errno.EBUSY \
            else exc.strerror
        raise UsageError(f"--cgroup {spec}: {why}") from None
    return Detection(Cgroups(folder, offered), "")
