"""One live job per run folder: an exclusive ``flock`` on ``<run>/.lock``, held by rank 0 from
set-up to the end of training.

The kernel drops a ``flock`` when the process holding it ends, however it ends (an error,
SIGKILL, the OOM killer), so a crash cannot leave a run folder locked; the file stays behind and
means nothing without a live holder. The holder writes its pid, host and start time into the
file, which is what a second job's error names. The lock is taken before anything in the folder
is written or cleaned (:func:`deepseek.training.checkpoint.remove_stale` deletes the temp folders
of a save in progress, so it must never run beside a live job).

:func:`try_lock` / :func:`unlock` are the primitive, also used by ``deepseek launch`` for its
temp folders. On platforms without ``fcntl`` (Windows) no lock is taken. Over NFS, Linux maps
``flock`` to POSIX record locks, which the server keeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deepseek.arguments import spelled
from deepseek.errors import UsageError
from deepseek.parsing import loads_json, read_file
from deepseek.training.rank_zero import rank_zero_outcome

if TYPE_CHECKING:
    from deepseek.training.strategy import Strategy

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class RunFolderBusy(UsageError):
    """Another live job holds the run folder."""


_HELD: set[int] = set()
"""Descriptors of the locks this process holds: a forked child closes its copies at once."""


def _close_in_child() -> None:
    """After a fork, in the child: a ``flock`` belongs to the open file, which the child's copy
    of the descriptor shares, so a child that outlived its parent (a DataLoader worker, a compile
    worker, a process a model forks) held the run folder "in use" after the job was killed. The
    child drops its copies; the parent's lock is unchanged."""
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def try_lock(path: str | os.PathLike[str]) -> int | None:
    """Open (creating) ``path`` and take an exclusive lock without waiting: the open descriptor
    (the lock lasts until :func:`unlock` or the process ends; forked children do not keep it),
    or ``None`` when another open file holds it. Without ``fcntl`` the descriptor is returned
    unlocked."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    _HELD.add(fd)
    return fd


def unlock(fd: int) -> None:
    """Release a lock taken by :func:`try_lock` (closing the descriptor releases it)."""
    _HELD.discard(fd)
    os.close(fd)


@dataclass
class RunLock:
    """The run folder lock of this process (``fd`` is ``None`` on ranks other than 0)."""

    path: Path
    fd: int | None = None

    def release(self) -> None:
        """Let another job use the folder (idempotent)."""
        if self.fd is not None:
            unlock(self.fd)
            self.fd = None


SINCE_FORMAT = "%Y-%m-%d %H:%M:%S"
"""How the holder writes its start time into the lock file."""
PID_MAX = 1 << 22
"""Largest pid Linux gives (``PID_MAX_LIMIT`` on 64-bit)."""
HOST_MAX = 255
"""Longest host name the holder can write (a DNS name is at most 253 characters)."""
HOLDER_MAX = 1024
"""Most bytes of a lock file read for its holder: what the holder writes is under 400."""


def write_holder(fd: int) -> None:
    """Write this process's pid, host and start time into the lock file ``fd`` it holds
    (:func:`try_lock`): what :func:`describe_holder` reads back for the error of the next comer."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime(SINCE_FORMAT)}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(holder).encode())


def describe_holder(path: Path) -> str:
    """``pid 123 on host h, since 2025-01-01 12:00:00`` from a lock file, as :func:`write_holder`
    writes it. The file is read back like user input: a pid that is not a positive integer, a host
    that is blank, does not print (an escape sequence for the terminal) or is longer than a host
    name, a start time not written as the holder writes it, or a file that is not that JSON, give
    ``its holder is unreadable`` rather than reaching an error line raw."""
    try:  # a regular file of at most HOLDER_MAX bytes (a FIFO there blocked the command that asked)
        data: bytes | None = read_file(path, HOLDER_MAX)
    except FileNotFoundError:
        return "its pid is not recorded yet"
    except OSError:
        data = None
    if data == b"":  # created, not written yet
        return "its pid is not recorded yet"
    try:
        text = data.decode() if data is not None else None
    except UnicodeDecodeError:
        text = None
    try:
        info = loads_json(text) if text is not None else None
    except ValueError:
        info = None
    pid, host, since = (info.get(k) for k in ("pid", "host", "since")) if isinstance(info, dict) else (None,) * 3
    if not (type(pid) is int and 0 < pid <= PID_MAX and isinstance(host, str) and 0 < len(host) <= HOST_MAX
            and host.isprintable() and not any(ch.isspace() for ch in host) and _is_since(since)):
        return "its holder is unreadable"
    return f"pid {pid} on host {host}, since {since}"


def _is_since(value: object) -> bool:
    """Whether ``value`` is a start time as the holder writes it (:data:`SINCE_FORMAT`)."""
    if not isinstance(value, str) or len(value) != len("2025-01-01 12:00:00"):
        return False
    try:
        time.strptime(value, SINCE_FORMAT)
    except ValueError:
        return False
    return True


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock file ``path`` (reads only: creates nothing)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # no lock file: nobody has held the folder
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def held_by_another(path: Path) -> bool:
    """Whether a live process other than this one holds the lock file ``path``: :func:`is_held`,
    unless the lock is this process's own (:func:`try_lock`)."""
    if not is_held(path):
        return False
    with contextlib.suppress(OSError):
        lock = os.stat(path)
        return not any(os.path.samestat(os.fstat(fd), lock) for fd in _HELD)
    return True


def _busy(run_dir: Path, lock_path: Path) -> str:
    return (
        f"run folder {run_dir} is in use by another live job ({describe_holder(lock_path)}); "
        f"wait for it to end or stop it, or pick another {spelled('--run-dir / logging.name', 'run_dir= / logging.name')}"
    )


def live_run_holding(path: Path) -> RunFolderBusy | None:
    """The error to give when ``path`` (a run folder, its ``checkpoints`` folder, or a checkpoint
    in it) belongs to a run folder a live job holds: a checkpoint that could not be read there
    may be one the job is writing or pruning, not a damaged one."""
    path = Path(path).absolute()
    for folder in (path, *list(path.parents)[:2]):
        if is_held(folder / LOCK_FILE):
            return RunFolderBusy(_busy(folder, folder / LOCK_FILE))
    return None


def refuse_if_busy(run_dir: Path, strategy: Strategy) -> None:
    """When a live job holds ``run_dir``: :class:`RunFolderBusy` on rank 0, its line on the others
    (a :class:`UsageError`: :func:`~deepseek.training.rank_zero.rank_zero_outcome`), exit 2 on every
    rank; writes nothing, so a run can check this before it reads (and validates) a checkpoint and
    only then lock."""
    path = Path(run_dir) / LOCK_FILE
    with rank_zero_outcome(strategy):
        if strategy.is_global_zero and is_held(path):
            raise RunFolderBusy(_busy(run_dir, path))


def lock_run_folder(run_dir: Path, strategy: Strategy) -> RunLock:
    """Take the lock of ``run_dir`` on rank 0 (creating the folder) and tell every rank the
    outcome; when a live job holds it, :class:`RunFolderBusy` on rank 0 and its line (a
    :class:`UsageError`) on the others, exit 2 on every rank. Every rank
    arrives first: what the ranks read of the run in their set-up (a resume's lookups) is read
    before rank 0 holds the folder, since to a rank other than 0 that lock is another process's, a
    live job's that a lookup waits for between a re-save's renames (up to ten seconds)."""
    lock = RunLock(Path(run_dir) / LOCK_FILE)
    strategy.barrier()
    try:
        with rank_zero_outcome(strategy):  # its error (a folder it cannot create, too) on every rank
            if strategy.is_global_zero:
                lock.path.parent.mkdir(parents=True, exist_ok=True)
                lock.fd = try_lock(lock.path)
                if lock.fd is None:
                    raise RunFolderBusy(_busy(run_dir, lock.path))
                write_holder(lock.fd)
    except BaseException:
        lock.release()
        raise
    return lock
