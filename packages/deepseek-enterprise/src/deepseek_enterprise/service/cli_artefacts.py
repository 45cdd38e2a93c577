"""``deepseek jobs files`` and ``deepseek jobs download``: a job's artefacts from the server
(docs/service.md, "Artefacts"). Nothing here imports torch, httpx or the server at module level.

A download lands in ``--out`` under its own name (a file's name, a folder's name, ``job-<id>``
for the whole workspace) and appears only when complete: it is written under a hidden
``.NAME.*.part`` name in the same folder and renamed at the end; on any error the part is
removed. A name already in ``--out`` is refused, never overwritten. A folder arrives as a tar
stream and is unpacked member by member as it comes; a member that is not a plain file or folder
under that one name (a link, a device, ``..``, an absolute name) fails the download.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import click

from deepseek import durable
from deepseek.cli.params import PATH
from deepseek.errors import UsageError, shown
from deepseek.paths import usual_mode
from deepseek_enterprise.cli_params import PATH_ARG
from deepseek_enterprise.service.answers import FILES
from deepseek_enterprise.service.names import TENANT

SERVER = click.option("--server", metavar="URL", help="The server (default: DEEPSEEK_SERVER or http://127.0.0.1:8600).")


def _client(server: str | None) -> Any:
    from deepseek_enterprise.service.client import Client

    return Client(server)


@click.command("files")
@click.argument("job_id", type=int)
@click.argument("path", type=PATH, required=False)
@TENANT
@SERVER
def files(job_id: int, path: str | None, tenant: str | None, server: str | None) -> None:
    """List the files under PATH (default: all; '.' too) in job JOB_ID's workspace."""
    c = _client(server)
    listing = c.request("GET", f"/v1/tenants/{c.tenant(tenant)}/jobs/{job_id}/files", FILES,
                        params={"path": "" if path is None else path})
    for e in listing["entries"]:
        size = "" if e["size"] is None else str(e["size"])
        click.echo(f"{e['type']:<5} {size:>12}  {shown(e['path'] + ('/' if e['type'] == 'dir' else ''))}")
    if listing["truncated"]:
        click.echo(f"... cut at {len(listing['entries'])} entries: name a folder as PATH", err=True)


@click.command("download")
@click.argument("job_id", type=int)
@click.argument("path", type=PATH, required=False)
@click.option("--out", type=PATH_ARG, default=Path("."), show_default=True, metavar="DIR",
              help="Folder the file or folder is written into (created if missing).")
@TENANT
@SERVER
def download(job_id: int, path: str | None, out: Path, tenant: str | None, server: str | None) -> None:
    """Download PATH of job JOB_ID's workspace (a file, or a folder; default, or '.': the whole
    workspace) into DIR."""
    path = "" if path is None else path
    c = _client(server)
    parts = [p for p in PurePosixPath(path).parts if p not in (".", "/")]
    name = parts[-1] if parts else f"job-{job_id}"
    if name == "..":
        raise UsageError(f"PATH {path!r}: '..' is not allowed; name a path inside the job's workspace")
    target = out / name
    if target.exists() or target.is_symlink():
        raise UsageError(f"--out {out}: {target} already exists; remove it or choose another --out")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder; give a folder")
    with c.stream(f"/v1/tenants/{c.tenant(tenant)}/jobs/{job_id}/download", {"path": path}) as r:
        made = _make_folder(out)  # only once the server sends something: a refusal leaves nothing behind
        try:
            if r.headers.get("content-type", "").startswith("application/x-tar"):
                count, size = _unpack(r.iter_bytes(), name, out, target)
                click.echo(f"{target}/: {count} files, {size} bytes")
            else:
                size = _save(r.iter_bytes(), int(r.headers.get("content-length", -1)), out, target)
                click.echo(f"{target}: {size} bytes")
        except BaseException:
            for folder in made:  # innermost first; each is empty again (the part was removed)
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise


def _make_folder(out: Path) -> list[Path]:
    """Create ``out`` and its missing parents; the folders created, innermost first."""
    made = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    return made


def _save(chunks: Iterator[bytes], expected: int, out: Path, target: Path) -> int:
    fd, part = tempfile.mkstemp(dir=out, prefix=f".{target.name}.", suffix=".part")
    size = 0
    try:
        usual_mode(fd)
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                size += len(chunk)
        if expected >= 0 and size != expected:
            raise UsageError(f"download of {target.name}: {size} of {expected} bytes arrived; try again")
        durable.replace(part, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise
    return size


class _Chunks:
    """A file-like ``read(n)`` over an iterator of byte chunks (tarfile's stream mode reads it)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = bytearray()

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        n = len(self._buf) if n < 0 else min(n, len(self._buf))
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


def _unpack(chunks: Iterator[bytes], name: str, out: Path, target: Path) -> tuple[int, int]:
    part = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}.", suffix=".part"))
    count = size = 0
    try:
        usual_mode(part, folder=True)
        try:
            with tarfile.open(fileobj=_Chunks(chunks), mode="r|") as tar:
                for member in tar:
                    _check_member(member, name)
                    tar.extract(member, part, filter="data")
                    if member.isfile():
                        count, size = count + 1, size + member.size
        except (tarfile.TarError, EOFError) as exc:
            raise UsageError(f"download of {name}: the tar stream is broken ({exc}); try again") from None
        if not (part / name).is_dir():
            raise UsageError(f"download of {name}: the server sent no folder {name!r}")
        durable.replace(part / name, target)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return count, size


def _check_member(member: tarfile.TarInfo, name: str) -> None:
    parts = PurePosixPath(member.name).parts
    if (not parts or parts[0] != name or ".." in parts or member.name.startswith("/")
            or not (member.isfile() or member.isdir())):
        raise UsageError(f"download of {name}: the server sent {member.name!r}, which is not a plain file or "
                         f"folder under {name}/; nothing was written")
