"""The launcher's temp folder: heartbeats and (unless ``--log-dir`` is given) the workers' logs of
one ``deepseek launch``, removed when the launcher ends, however the job ended.

``<tmp>/deepseek-job-XXXX/`` holds ``heartbeats/``, ``logs/`` and ``.lock``, a lock
(:func:`deepseek.training.run_lock.try_lock`) the launcher holds while it lives. The folder of a
launcher that could not clean up (SIGKILL, power loss) keeps a lock nobody holds; the next launch
removes such folders (:func:`remove_abandoned`). The lock file is locked under a temporary name
and then renamed to ``.lock``, so another launcher never sees an unlocked ``.lock`` of a live job.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deepseek import durable
from deepseek.training.run_lock import try_lock, unlock

PREFIX = "deepseek-job-"
LOCK_FILE = ".lock"


@dataclass
class JobDir:
    """One launcher's temp folder, locked while :attr:`fd` is open."""

    path: Path
    fd: int | None

    @property
    def heartbeats(self) -> Path:
        """Where the workers write their heartbeats."""
        return self.path / "heartbeats"

    @property
    def logs(self) -> Path:
        """Where the workers' logs go when ``--log-dir`` is not given."""
        return self.path / "logs"

    def remove(self) -> None:
        """Delete the folder and release its lock (idempotent)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self.fd is not None:
            unlock(self.fd)
            self.fd = None


def create_job_dir(parent: str | os.PathLike[str] | None = None) -> JobDir:
    """A fresh, locked ``deepseek-job-XXXX`` folder under ``parent`` (default: the temp dir)."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    staged = path / f"{LOCK_FILE}.new"
    fd = try_lock(staged)
    if fd is None:  # pragma: no cover - nobody else knows this name yet
        raise RuntimeError(f"{staged}: could not lock a file nobody else uses")
    durable.move(staged, path / LOCK_FILE)
    for sub in ("heartbeats", "logs"):
        (path / sub).mkdir()
    return JobDir(path, fd)


def remove_abandoned(parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Delete the job folders of launchers that are gone (their lock is free); returns them.
    Folders of live launchers, of other users and of unknown form are left alone."""
    base = Path(parent or tempfile.gettempdir())
    removed = []
    for path in base.glob(f"{PREFIX}*"):
        with contextlib.suppress(OSError):
            mine = not hasattr(os, "getuid") or path.stat().st_uid == os.getuid()
            if not path.is_dir() or not mine or not (path / LOCK_FILE).is_file():
                continue
            fd = try_lock(path / LOCK_FILE)
            if fd is None:
                continue
            try:
                shutil.rmtree(path, ignore_errors=True)
            finally:
                unlock(fd)
            removed.append(path)
    return removed
