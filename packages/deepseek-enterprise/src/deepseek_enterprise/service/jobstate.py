"""A job's server-owned state folder, ``ROOT/jobstate/<id>/`` (mode 0700, like ``ROOT/jobstate``):
outside every tenant folder, so no path of a job's arguments or config can name it
(``jobpaths`` admits only paths under ``ROOT/tenants/<tenant>/``).

What it holds, and who writes it:

- ``launch.lock``: the executor takes an exclusive ``flock`` on it before it starts the job and
  hands the locked descriptor to the process that launches it (the local executor's wrapper,
  which keeps it for the job's whole life; ``sbatch`` for Slurm, until it has submitted). While
  it is held, a launch of the job is alive or in flight; once it is free, none is. The job's own
  processes do not inherit it (the wrapper starts them with its other descriptors closed);
- ``started``: the wrapper's first act, ``{"pid", "start", "slurm_job_id", "boot_id"}`` (its pid,
  its start time in ``/proc/PID/stat``, ``SLURM_JOB_ID`` under Slurm, the machine's boot id
  ``/proc/sys/kernel/random/boot_id``): the job's command was launched. A marker without
  ``boot_id`` (an older wrapper, a kernel without the file) is still read;
- ``exit_reason``, then ``exit_code``: the wrapper's last acts, when the job has ended.

Each file is written whole under a temporary name and renamed, never through a symbolic link.
Everything read back is checked like user input (:class:`Unreadable` says what was wrong): a
job runs as the server's Unix user, so a hostile job that knows this path can still write here
(docs/service.md, "Isolation").

:func:`alive` is the one rule for "this local job's process still runs" (a process known by pid,
start time and boot; the executor's re-attach, its ``find`` and its signals all ask it);
:func:`is_wrapper` adds that the process is the wrapper of a given state folder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from deepseek import durable
from deepseek.parsing import loads_json

DIR = "jobstate"
LOCK, STARTED, EXIT_CODE, EXIT_REASON = "launch.lock", "started", "exit_code", "exit_reason"
_LEFT = (STARTED, EXIT_CODE, EXIT_REASON)
_CODE = re.compile(r"([0-9]{1,3})\n?")
_DIGITS = re.compile(r"[0-9]{1,20}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class Unreadable(ValueError):
    """A state file holds something its writer never writes (one line saying what)."""


@dataclass(frozen=True)
class Marker:
    """What ``started`` says: the wrapper's pid and start time on the machine it runs on, the
    Slurm job id where there is one, and the boot id of that machine (None: an older marker)."""

    pid: int | None
    start: str | None
    slurm_job_id: int | None
    boot_id: str | None = None


def boot_id(path: Path = BOOT_ID) -> str | None:
    """This machine's boot id (36-character lower-case UUID, new at every boot), None where the
    kernel has no such file or it holds something else."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return text if _UUID.fullmatch(text) else None


def alive(pid: int | None, start: str | None, boot: str | None = None, this_boot: str | None = None) -> bool:
    """Whether the process ``pid`` that started at ``start`` (clock ticks since boot, as in
    ``/proc/PID/stat``) during boot ``boot`` still runs now, in boot ``this_boot``: the one rule
    for a local job's wrapper.

    A process recorded in another boot has ended (with the reboot): its pid and start ticks may
    well match an unrelated process now, since start ticks count from boot, so ``/proc`` is not
    asked. Where either boot id is unknown (a marker written before the wrapper recorded it, a
    handle checked in this boot, a kernel without ``boot_id``) the rule is what it was before boot
    ids: same pid and same start ticks, not a zombie."""
    if pid is None or start is None:
        return False
    if boot is not None and this_boot is not None and boot != this_boot:
        return False
    return process_start(pid) == start


def is_wrapper(marker: Marker, this_boot: str | None, state: Path) -> bool:
    """Whether the process ``marker`` names is a job wrapper of the state folder ``state``: alive
    (:func:`alive`, its boot too), a session leader (the executor starts it in a new
    session), and its command line ``... -m deepseek_enterprise.service.child --state STATE ...``."""
    pid = marker.pid
    if pid is None or not alive(pid, marker.start, marker.boot_id, this_boot):
        return False
    try:
        if os.getsid(pid) != pid:
            return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read(1 << 16).split(b"\0")
    except OSError:
        return False
    want = [b"-m", b"deepseek_enterprise.service.child", b"--state", os.fsencode(state)]
    return any(argv[i:i + 4] == want for i in range(len(argv)))


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat_line = f.read()
    except OSError:
        return None
    fields = stat_line.rsplit(")", 1)[1].split()
    if fields and fields[0] == "Z":  # a zombie has exited
        return None
    return fields[19] if len(fields) > 19 else None


def folder(root: Path, job_id: int) -> Path:
    return root / DIR / str(int(job_id))


def make(root: Path, job_id: int) -> Path:
    """The job's state folder, made (mode 0700, ``ROOT/jobstate`` too); a symbolic link in its
    place is refused (OSError)."""
    path = folder(root, job_id)
    for f in (path.parent, path):
        f.mkdir(mode=0o700, exist_ok=True)
        if f.is_symlink() or not f.is_dir():
            raise OSError(f"{f} is not a folder of the server's (a symbolic link?)")
        os.chmod(f, 0o700)
    return path


def clear(path: Path) -> None:
    """Remove what an earlier launch left (``started``, ``exit_code``, ``exit_reason``)."""
    for name in (*_LEFT, *(f"{n}.tmp" for n in _LEFT)):
        try:
            os.unlink(path / name)
        except FileNotFoundError:
            pass


def write(path: Path, name: str, text: str) -> None:
    """``path/name`` = ``text``, whole (temporary name, then :func:`deepseek.durable.replace`; never
    through a link)."""
    tmp = path / f"{name}.tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    durable.replace(tmp, path / name)


def _read(path: Path, name: str, limit: int) -> str | None:
    """The file's text (at most ``limit`` bytes), None when it does not exist; Unreadable when it
    is a link, not a regular file, longer, or not UTF-8."""
    try:
        fd = os.open(path / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise Unreadable(f"{path / name} cannot be read ({why})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise Unreadable(f"{path / name} is not a regular file")
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise Unreadable(f"{path / name} is longer than its writer ever writes ({limit} bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable(f"{path / name} is not text") from None


def read_exit_code(path: Path) -> int | None:
    """The job's exit code (0-255), None when there is no ``exit_code``; Unreadable otherwise."""
    text = _read(path, EXIT_CODE, 16)
    if text is None:
        return None
    m = _CODE.fullmatch(text)
    if m is None or int(m.group(1)) > 255:
        raise Unreadable(f"{path / EXIT_CODE} holds {text[:16]!r}, not an exit code (0-255)")
    return int(m.group(1))


def read_reason(path: Path) -> str:
    """The wrapper's one line in ``exit_reason`` ('' when none or unreadable; printable, at most
    500 characters)."""
    try:
        text = _read(path, EXIT_REASON, 2000) or ""
    except Unreadable:
        return ""
    line = text.splitlines()[0] if text.strip() else ""
    return "".join(c for c in line if c.isprintable())[:500].strip()


def read_started(path: Path) -> Marker | None:
    """What ``started`` says, None when the wrapper has not written it; Unreadable when it is not
    what the wrapper writes."""
    text = _read(path, STARTED, 256)
    if text is None:
        return None
    try:
        data = loads_json(text)
    except ValueError:
        data = None
    keys = {"pid", "start", "slurm_job_id"}
    if not isinstance(data, dict) or set(data) not in (keys, keys | {"boot_id"}):
        raise Unreadable(f"{path / STARTED} is not the wrapper's start marker")
    pid, start, slurm, boot = data["pid"], data["start"], data["slurm_job_id"], data.get("boot_id")
    if not (pid is None or (type(pid) is int and 0 < pid < 1 << 22)) \
            or not (start is None or (isinstance(start, str) and _DIGITS.fullmatch(start))) \
            or not (slurm is None or (type(slurm) is int and 0 < slurm < 10**12)):
        raise Unreadable(f"{path / STARTED} holds values the wrapper never writes")
    if not isinstance(boot, str | None) or (boot is not None and not _UUID.fullmatch(boot)):
        raise Unreadable(f"{path / STARTED}: boot_id {str(boot)[:40]!r} is not a boot id (a 36-character "
                         "lower-case UUID, as in /proc/sys/kernel/random/boot_id)")
    return Marker(pid, start, slurm, boot)


def marker_text(pid: int, start: str | None, slurm_job_id: str | None, boot: str | None = None) -> str:
    """The ``started`` text of the wrapper ``pid`` (``slurm_job_id``: SLURM_JOB_ID, if digits;
    ``boot``: this machine's :func:`boot_id`, left out when unknown)."""
    slurm = int(slurm_job_id) if slurm_job_id and _DIGITS.fullmatch(slurm_job_id) and len(slurm_job_id) <= 12 else None
    data: dict[str, object] = {"pid": pid, "start": start if start and _DIGITS.fullmatch(start) else None,
                               "slurm_job_id": slurm}
    if boot is not None and _UUID.fullmatch(boot):
        data["boot_id"] = boot
    return json.dumps(data)


def _open_lock(path: Path, flags: int) -> int:
    """The lock file opened (never blocking: a FIFO put in its place opens at once), OSError
    when it is not a regular file."""
    fd = os.open(path / LOCK, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path / LOCK} is not a regular file (not the server's launch lock)")
    return fd


def lock(path: Path) -> int:
    """Take the launch lock: the descriptor (close-on-exec; pass it to the launching process),
    OSError when a launch of the job still holds it or the lock file is not one."""
    fd = _open_lock(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(f"an earlier launch of this job still holds {path / LOCK}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def held(path: Path) -> bool:
    """Whether a launch of the job holds its lock now (alive, or still being submitted); OSError
    when that cannot be told (the lock file is a link, a FIFO, ...: never waited on)."""
    try:
        fd = _open_lock(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases it if this took it
    return False
