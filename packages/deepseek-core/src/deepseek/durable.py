"""Putting a file or folder under its final name whole and durably: the one place every writer of
run, checkpoint, study and job state goes through.

A writer fills a temporary name beside the target (:func:`staged`, or its own temporary name),
then :func:`replace` flushes it to disk (``fsync`` of the file, or of every file and folder in a
folder), renames it onto the target and fsyncs the folder holding the target. The first fsync is
what keeps a power loss after the rename from leaving an empty or partial file under the final
name (the file system may put the rename on disk before the data); the second is what keeps the
rename itself from being lost (the old content coming back after a restart). A process killed at
any moment leaves the old content or the new one under the name, and at most a temporary name
beside it. :func:`move` renames what is already on disk (a folder set aside to be deleted) and
fsyncs the folders on both sides. :func:`fsync_file` flushes a file that is appended to in place
(``metrics.jsonl``) up to what it holds now, for a commit that points past it. Nothing here
imports torch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_NO_DIR_FSYNC = (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS)
"""What a file system answers when it cannot fsync a folder (some network and FUSE ones): the
rename stands as far as that file system can promise, so it is not an error."""


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush ``directory``'s entries (names created, renamed or removed in it) to disk."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        if exc.errno in _NO_DIR_FSYNC:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_FSYNC:
            raise
    finally:
        os.close(fd)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush ``path`` to disk: a file's data, or a folder's files and folders, all of them."""
    p = Path(path)
    if not p.is_dir():
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    for folder, _dirs, files in os.walk(p):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_dir(folder)


def fsync_file(file: IO[Any]) -> None:
    """Flush an open file's buffer and its data to disk (its name is already on disk: the folder
    entry was made durable when the file was put in place)."""
    file.flush()
    os.fsync(file.fileno())


def replace(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Put ``tmp`` (a file or folder, written in full) under ``target``'s name durably: fsync its
    content, rename, fsync the folders the rename touched."""
    fsync_path(tmp)
    move(tmp, target)


def move(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename ``source`` to ``target`` (``os.replace``) and fsync the folder of each."""
    src, dst = Path(source), Path(target)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent.resolve() != dst.parent.resolve():
        fsync_dir(src.parent)


@contextlib.contextmanager
def staged(target: str | os.PathLike[str], *, suffix: str = ".tmp", folder: bool = False,
           mode: bool = True) -> Iterator[Path]:
    """A temporary name beside ``target`` (``.<name>.XXXX<suffix>``; an empty file, or with
    ``folder`` an empty folder) to write in; :func:`replace`\\ d onto ``target`` when the block
    ends without an exception, removed when it raises. ``mode``: given the mode a plain
    ``open``/``mkdir`` would have under the umask (``mkstemp`` and ``mkdtemp`` make 0600/0700)."""
    from deepseek.paths import usual_mode

    dst = Path(target)
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=suffix, dir=dst.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=suffix, dir=dst.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        if mode:
            usual_mode(tmp, folder=folder)
        yield tmp
        replace(tmp, dst)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """``target`` = ``data``, whole and durably (:func:`staged`)."""
    dst = Path(target)
    with staged(dst) as tmp:
        tmp.write_bytes(data)
    return dst


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """``target`` = ``text`` (UTF-8), whole and durably (:func:`staged`)."""
    return write_bytes(target, text.encode("utf-8"))
