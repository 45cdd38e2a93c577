"""Routes for a job's artefacts: ``/v1/tenants/{tenant}/jobs/{id}/files`` (list),
``.../download`` (a file, or a folder as a tar stream) and ``.../metrics`` (the loss curve of a
run folder, read incrementally; the web page polls it).

Any role of the tenant reads them; a job of another tenant is 404 exactly like a job that does
not exist. Paths are relative to the job's workspace and are opened without following links
(:mod:`.artefacts`): ``..`` or an absolute path is 422, a link on the way 409, a missing file
404, each with one line. Downloads stream: a checkpoint of many GiB is never read into memory.
"""

from __future__ import annotations

import math
import os
import stat
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from deepseek.parsing import loads_json
from deepseek_enterprise.service import artefacts
from deepseek_enterprise.service.api import Caller, JobId, Service, Svc
from deepseek_enterprise.service.api_jobs import _job
from deepseek_enterprise.service.auth import ApiError, Principal, tenant_row

router = APIRouter(prefix="/v1/tenants/{tenant}/jobs/{job_id}")
METRICS_FILE = "metrics.jsonl"
MAX_METRICS_READ = 1 << 20
MAX_RUNS = 50
PATH = Query(default="", max_length=4096, description="A path relative to the job's workspace ('' is all of it).")


def _workspace(svc: Service, who: Principal, tenant: str, job_id: int) -> tuple[int, str]:
    """A descriptor of the job's workspace, after the caller's right to read the job is checked;
    and the job's state."""
    with svc.store.session() as s:
        t = tenant_row(s, who, tenant)
        state = _job(s, t.id, job_id, tenant).state
        name = t.name
    return artefacts.open_workspace(svc.root, name, job_id), state


@router.get("/files")
def files(tenant: str, job_id: JobId, path: str = PATH, who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """What is under ``path`` in the job's workspace (any role): every file and folder, links
    listed as ``link`` and never entered; at most 10000 entries (``truncated`` says when cut)."""
    parts = artefacts.parts_of(path)
    fd, _state = _workspace(svc, who, tenant, job_id)
    fd, st = artefacts.open_path(fd, parts, job_id)
    shown = "/".join(parts)
    if stat.S_ISREG(st.st_mode):
        os.close(fd)
        return {"path": shown, "entries": [{"path": shown, "type": "file", "size": st.st_size, "mtime": st.st_mtime}],
                "truncated": False}
    entries, truncated = artefacts.listing(fd, f"{shown}/" if shown else "")
    return {"path": shown, "entries": entries, "truncated": truncated}


@router.get("/download", response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}, "application/x-tar": {}}}})
def download(tenant: str, job_id: JobId, path: str = PATH, who: Principal = Caller,
             svc: Service = Svc) -> StreamingResponse:
    """A file of the job's workspace as ``application/octet-stream`` (with its length), or a
    folder (``path`` empty: the whole workspace) as an ``application/x-tar`` stream of its regular
    files and folders, named under the folder's name (``job-<id>`` for the workspace)."""
    parts = artefacts.parts_of(path)
    fd, _state = _workspace(svc, who, tenant, job_id)
    fd, st = artefacts.open_path(fd, parts, job_id)
    if stat.S_ISREG(st.st_mode):
        name = parts[-1]
        return StreamingResponse(artefacts.stream_file(fd, st.st_size), media_type="application/octet-stream",
                                 headers={"Content-Length": str(st.st_size), "Content-Disposition": _attachment(name)})
    top = parts[-1] if parts else f"job-{job_id}"
    return StreamingResponse(artefacts.stream_tar(fd, top), media_type="application/x-tar",
                             headers={"Content-Disposition": _attachment(f"{top}.tar")})


def _attachment(name: str) -> str:
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"


@router.get("/metrics")
def metrics(tenant: str, job_id: JobId, run: str | None = Query(default=None, max_length=4096),
            offset: int = Query(default=0, ge=0), file_id: str | None = Query(default=None, max_length=64),
            who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """The loss curve of one run folder of the job (any role): the ``loss`` and ``val_loss``
    points of its ``metrics.jsonl`` from byte ``offset`` (whole lines, at most 1 MiB a call).

    ``run`` is the run folder relative to the workspace (default: the one whose metrics changed
    last); ``runs`` lists every folder holding a ``metrics.jsonl`` (when ``run`` is not given or
    ``offset`` is 0; else null: polls do not walk the workspace). Pass back ``next_offset`` and
    ``file_id``: when the file was replaced (a resumed run rewrites it) or shrank, the answer
    starts again from byte 0 with ``reset`` true. Lines that are not a metrics record, and values
    that are not finite numbers, are skipped and counted in ``skipped``.
    """
    run_parts = artefacts.parts_of(run) if run is not None else None
    fd, state = _workspace(svc, who, tenant, job_id)
    runs = _runs(os.dup(fd)) if run_parts is None or offset == 0 else None  # not at every poll
    out: dict[str, Any] = {"state": state, "runs": None if runs is None else sorted(r for r, _ in runs),
                           "run": None, "file_id": None,
                           "offset": 0, "next_offset": 0, "reset": False, "loss": [], "val_loss": [], "skipped": 0}
    if run_parts is None:
        assert runs is not None
        if not runs:
            os.close(fd)
            return out
        run_parts = artefacts.parts_of(max(runs, key=lambda r: r[1])[0])
    fd, st = artefacts.open_path(fd, (*run_parts, METRICS_FILE), job_id)
    try:
        if not stat.S_ISREG(st.st_mode):
            raise ApiError(409, f"job {job_id}: {'/'.join(run_parts)}/{METRICS_FILE} is a folder, not a metrics file")
        this_id = f"{st.st_dev}-{st.st_ino}"
        if (file_id is not None and file_id != this_id) or offset > st.st_size:
            offset, out["reset"] = 0, True
        data = os.pread(fd, min(MAX_METRICS_READ, max(st.st_size - offset, 0)), offset)
    finally:
        os.close(fd)
    end = data.rfind(b"\n") + 1
    if end == 0 and len(data) == MAX_METRICS_READ:
        end = len(data)  # one line longer than a read: skip it whole
        out["skipped"] += 1
    loss, val, skipped = parse_points(data[:end])
    out.update(run="/".join(run_parts), file_id=this_id, offset=offset, next_offset=offset + end, loss=loss,
               val_loss=val, skipped=out["skipped"] + skipped)
    return out


def parse_points(data: bytes) -> tuple[list[list[float]], list[list[float]], int]:
    """``(loss points, val_loss points, lines skipped)`` of whole ``metrics.jsonl`` lines; a
    point is ``[step, value]``. A line must be a JSON object with a whole ``step`` >= 0 (as
    ``deepseek train`` writes them); values must be finite numbers."""
    loss: list[list[float]] = []
    val: list[list[float]] = []
    skipped = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            record = loads_json(line)
        except (ValueError, UnicodeDecodeError):
            skipped += 1
            continue
        step = record.get("step") if isinstance(record, dict) else None
        if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
            skipped += 1
            continue
        for key, points in (("loss", loss), ("val_loss", val)):
            value = record.get(key)
            if value is None:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                points.append([step, value])
            else:
                skipped += 1
    return loss, val, skipped


def _runs(workspace_fd: int) -> list[tuple[str, float]]:
    """``(run folder, mtime of its metrics)`` of every folder holding a regular ``metrics.jsonl``
    in the workspace (closes ``workspace_fd``; at most :data:`MAX_RUNS`)."""
    entries, _cut = artefacts.listing(workspace_fd, limit=20_000)
    found = [(e["path"].rsplit("/", 1)[0] if "/" in e["path"] else "", e["mtime"]) for e in entries
             if e["type"] == "file" and e["path"].rsplit("/", 1)[-1] == METRICS_FILE]
    return found[:MAX_RUNS]
