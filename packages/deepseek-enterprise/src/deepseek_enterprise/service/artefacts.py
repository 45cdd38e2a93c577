"""A job's artefacts: the files under its workspace, read without ever following a link.

Everything a job writes lives in ``<root>/tenants/<tenant>/jobs/<id>/`` (its ``job.log``,
``exit_code``, ``config.toml``, run folders with ``metrics.jsonl`` and checkpoints). The job runs
as the server's user and may put anything there, symbolic links and FIFOs included, and may
change it while it is read. So a path is opened one component at a time from the workspace's
own descriptor (``openat`` with ``O_NOFOLLOW``; the workspace itself is reached the same way
from the root): a link anywhere is refused (409), never followed, and a rename racing the
request cannot move the walk outside. Only regular files and folders are served; a FIFO or a
device is refused (409) and is opened with ``O_NONBLOCK`` so that it cannot hang the server.

A path names a place inside the workspace: relative, ``/``-separated, no ``..`` component
(422 with one line otherwise); one holding a name over 255 bytes, which no file has
(:data:`deepseek.paths.NAME_MAX`, the rule a job's paths are held to at submit), is not there (404). Files stream in chunks of :data:`CHUNK` bytes; a folder streams as
a POSIX (pax) tar of its regular files and folders, links and other special files left out. A
file's size is taken when the stream reaches it: bytes appended later are not sent, and a file
that shrinks meanwhile is padded with zero bytes to the size announced in its tar header.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from deepseek.paths import NAME_MAX
from deepseek_enterprise.service.auth import ApiError

CHUNK = 1 << 20
MAX_LISTED = 10_000
MAX_DEPTH = 32
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ANY_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def parts_of(path: str) -> tuple[str, ...]:
    """The components of a requested ``path`` ("" or "." is the workspace itself); 422 for one
    that could leave the workspace."""
    if "\x00" in path:
        raise ApiError(422, "path: a NUL character is not allowed")
    if len(path) > 4096:
        raise ApiError(422, "path: longer than 4096 characters")
    if path.startswith("/"):
        raise ApiError(422, f"path {path!r}: absolute paths are not allowed; name a path relative to the "
                            "job's workspace (e.g. runs/a/metrics.jsonl)")
    parts = tuple(p for p in PurePosixPath(path).parts if p != ".")
    if ".." in parts:
        raise ApiError(422, f"path {path!r}: '..' is not allowed; name a path inside the job's workspace")
    return parts


def open_workspace(root: Path, tenant: str, job_id: int) -> int:
    """A descriptor of the job's workspace folder (404 when the job has none yet)."""
    fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for part in ("tenants", tenant, "jobs", str(job_id)):
            fd = _step(fd, part, _DIR_FLAGS, f"job {job_id}", "workspace")
    except ApiError as exc:
        if exc.status == 404:
            raise ApiError(404, f"job {job_id} has no workspace yet (it has not started)") from None
        raise
    return fd


def open_path(workspace_fd: int, parts: tuple[str, ...], job_id: int) -> tuple[int, os.stat_result]:
    """``(fd, stat)`` of a regular file or folder below the workspace; closes ``workspace_fd``."""
    fd = workspace_fd
    shown = "/".join(parts) or "."
    for i, part in enumerate(parts):
        fd = _step(fd, part, _DIR_FLAGS if i < len(parts) - 1 else _ANY_FLAGS, f"job {job_id}", shown)
    st = os.fstat(fd)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        os.close(fd)
        raise ApiError(409, f"job {job_id}: {shown!r} is not a regular file or folder; only those are served")
    return fd, st


def _step(fd: int, part: str, flags: int, who: str, shown: str) -> int:
    """Open ``part`` below ``fd`` without following a link; closes ``fd``."""
    try:
        return os.open(part, flags, dir_fd=fd)
    except OSError as exc:
        if _is_link(fd, part):  # ELOOP, or ENOTDIR for a link to a folder opened with O_DIRECTORY
            raise ApiError(409, f"{who}: {shown!r}: {part!r} is a symbolic link; links are not followed") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise ApiError(404, f"{who}: no {shown!r} in its workspace") from None
        if exc.errno == errno.ENAMETOOLONG:  # no job could have made it: not there, as a missing name
            raise ApiError(404, f"{who}: no {shown!r} in its workspace (a name in it is longer than the "
                                f"{NAME_MAX} bytes a file system takes)") from None
        raise ApiError(409, f"{who}: {shown!r} cannot be read ({errno.errorcode.get(exc.errno, exc.errno)})") from None
    finally:
        os.close(fd)


def _is_link(fd: int, part: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def listing(dir_fd: int, prefix: str = "", limit: int = MAX_LISTED) -> tuple[list[dict[str, Any]], bool]:
    """Every entry below the folder ``dir_fd`` (closed here), depth first in name order, at most
    ``limit``: ``{"path", "type": file|dir|link|other, "size", "mtime"}``; and whether the list
    was cut at ``limit``. Links are listed as links and never entered; a path that is not UTF-8 is
    ``other`` (not served), its undecodable bytes shown as ``\\xNN``."""
    out: list[dict[str, Any]] = []
    walk = _walk(dir_fd, prefix)
    try:
        for rel, st, _parent, _name in walk:
            if len(out) >= limit:
                return out, True
            kind = ("file" if stat.S_ISREG(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode)
                    else "link" if stat.S_ISLNK(st.st_mode) else "other")
            try:
                rel.encode()
            except UnicodeEncodeError:  # a name that is not UTF-8 (JSON cannot carry it, no request can name it)
                rel, kind = os.fsencode(rel).decode(errors="backslashreplace"), "other"
            out.append({"path": rel, "type": kind, "size": st.st_size if kind == "file" else None,
                        "mtime": st.st_mtime})
    finally:
        walk.close()
    return out, False


def _walk(dir_fd: int, prefix: str, depth: int = 0) -> Iterator[tuple[str, os.stat_result, int, str]]:
    """``(relative path, lstat, parent folder fd, name)`` of every entry below ``dir_fd`` (folders
    deeper than :data:`MAX_DEPTH` are listed, not entered); the parent's fd is open while the
    entry is being looked at, and ``dir_fd`` is closed at the end."""
    try:
        with os.scandir(dir_fd) as it:
            names = sorted(e.name for e in it)
        for name in names:
            rel = f"{prefix}{name}"
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile
            yield rel, st, dir_fd, name
            if stat.S_ISDIR(st.st_mode) and depth < MAX_DEPTH:
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError:
                    continue  # replaced by a link or removed meanwhile: not entered
                yield from _walk(child, rel + "/", depth + 1)
    finally:
        os.close(dir_fd)


def stream_file(fd: int, size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of the open file ``fd`` (closed at the end), in chunks."""
    try:
        left = size
        while left > 0:
            data = os.read(fd, min(CHUNK, left))
            if not data:
                break
            left -= len(data)
            yield data
    finally:
        os.close(fd)


def stream_tar(dir_fd: int, top: str) -> Iterator[bytes]:
    """A pax tar of the folder ``dir_fd`` (closed at the end) with member names under ``top``."""
    yield _header(top, tarfile.DIRTYPE, 0, os.fstat(dir_fd).st_mtime)
    walk = _walk(dir_fd, f"{top}/")
    try:
        for rel, st, parent, name in walk:
            if stat.S_ISDIR(st.st_mode):
                yield _header(rel, tarfile.DIRTYPE, 0, st.st_mtime)
            elif stat.S_ISREG(st.st_mode):
                yield from _tar_member(parent, name, rel)
    finally:
        walk.close()
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _tar_member(parent: int, name: str, rel: str) -> Iterator[bytes]:
    """One regular file's header and bytes (nothing when it became a link or went away)."""
    try:
        fd = os.open(name, _ANY_FLAGS, dir_fd=parent)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        size = st.st_size
        yield _header(rel, tarfile.REGTYPE, size, st.st_mtime)
        sent = 0
        while sent < size:
            want = min(CHUNK, size - sent)
            data = os.read(fd, want) or b"\0" * want  # shrunk meanwhile: zeros to the announced size
            sent += len(data)
            yield data
        if size % tarfile.BLOCKSIZE:
            yield b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)
    finally:
        os.close(fd)


def _header(name: str, kind: bytes, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
