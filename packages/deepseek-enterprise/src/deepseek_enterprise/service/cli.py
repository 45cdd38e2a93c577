"""``deepseek jobs ...`` and ``deepseek tenants ...``: clients of the job service's HTTP API
(docs/service.md). Nothing here imports torch, httpx or the server at module level."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from deepseek.cli.params import FiniteFloat
from deepseek.errors import UsageError, shown
from deepseek_enterprise.cli_params import PATH_ARG
from deepseek_enterprise.service import answers as A
from deepseek_enterprise.service.cli_artefacts import SERVER, download, files
from deepseek_enterprise.service.names import (
    JOB_STATES,
    ROLES,
    SERVICE_NAME,
    TENANT,
    TokenId,
    TokenLabel,
)
from deepseek_enterprise.service.tokens import MAX_DAYS, MIN_DAYS

FINAL = {"succeeded", "failed", "cancelled", "lost"}


def _client(server: str | None) -> Any:
    from deepseek_enterprise.service.client import Client

    return Client(server)


def _read(path: Path, where: str) -> str:
    """A local text file a job is sent: a regular file (a FIFO blocked the command for ever, a device
    such as /dev/zero filled its memory) of at most ``jobpaths.MAX_FILE_BYTES``, as the server takes
    it, in UTF-8; its line ends read as ``\\n`` (as ``read_text`` reads them)."""
    import os
    import stat

    from deepseek_enterprise.service.jobpaths import MAX_FILE_BYTES

    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:  # opening a FIFO does not wait
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise UsageError(f"{where} {path}: not a regular file; give a text file")
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise UsageError(f"{where} {path}: larger than {MAX_FILE_BYTES} bytes, the most the server takes for "
                             "a job's file; put the data in the tenant's folder and name it by its path")
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where} {path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start:,}); "
                         "save it as UTF-8 text") from None
    except FileNotFoundError:
        raise UsageError(f"{where} {path}: does not exist; check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{where} {path}: is a folder; give a text file") from None
    except OSError as exc:
        raise UsageError(f"{where} {path}: cannot read it ({exc.strerror or exc.__class__.__name__}); "
                         "check the path and its permissions") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


@click.group("jobs")
def jobs() -> None:
    """Submit, list, show, follow and cancel jobs on a deepseek server; list and download their files."""


@jobs.command("submit", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command", type=click.Choice(["train", "eval", "tune", "compress", "bench"]))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--config", "config_file", type=PATH_ARG, metavar="CONFIG.toml",
              help="A local config file, sent as the job's config.toml (train and tune take it).")
@click.option("--file", "extra", multiple=True, type=PATH_ARG, metavar="PATH",
              help="A local text file copied into the job's workspace under its name (repeatable).")
@click.option("--devices", type=click.IntRange(0, 4096), default=0, show_default=True, help="GPUs the job needs.")
@TENANT
@SERVER
def submit(command: str, args: tuple[str, ...], config_file: Path | None, extra: tuple[Path, ...], devices: int,
           tenant: str | None, server: str | None) -> None:
    """Queue COMMAND ARGS... as a job (options of this command come before COMMAND's own; paths in
    ARGS are read inside the job's workspace)."""
    c = _client(server)
    names = [p.name for p in extra]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # the workspace holds one file per name: one of them would be lost
        raise UsageError(f"--file: {', '.join(twice)} given twice (files land in the workspace under their names); "
                         "give each name once")
    body = {"command": command, "args": list(args), "devices": devices,
            "config": _read(config_file, "--config") if config_file is not None else None,
            "files": {p.name: _read(p, "--file") for p in extra}}
    t = c.tenant(tenant)
    job = c.post(f"/v1/tenants/{t}/jobs", A.JOB, body)
    click.echo(f"job {job['id']} queued in tenant {t} (workspace {job['workspace']})")


@jobs.command("list")
@click.option("--state", type=click.Choice(JOB_STATES))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@TENANT
@SERVER
def list_jobs(state: str | None, as_json: bool, tenant: str | None, server: str | None) -> None:
    """The tenant's jobs, newest first."""
    c = _client(server)
    rows = c.get(f"/v1/tenants/{c.tenant(tenant)}/jobs", A.JOBS, state=state)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'id':>6}  {'state':<10} {'command':<9} {'user':<16} {'exit':>4}  created")
    for j in rows:
        code = "" if j["exit_code"] is None else str(j["exit_code"])
        click.echo(f"{j['id']:>6}  {j['state']:<10} {j['command']:<9} {j['user']:<16} {code:>4}  {j['created_at']}")


@jobs.command("show")
@click.argument("job_id", type=int)
@TENANT
@SERVER
def show(job_id: int, tenant: str | None, server: str | None) -> None:
    """One job, as JSON."""
    c = _client(server)
    click.echo(json.dumps(c.get(f"/v1/tenants/{c.tenant(tenant)}/jobs/{job_id}", A.ANY_OBJECT), indent=2))


@jobs.command("logs")
@click.argument("job_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
@TENANT
@SERVER
def logs(job_id: int, follow: bool, tenant: str | None, server: str | None) -> None:
    """The job's output."""
    c = _client(server)
    t = c.tenant(tenant)
    offset = 0
    while True:
        path = f"/v1/tenants/{t}/jobs/{job_id}/logs"
        part = c.get(path, A.LOG_PART, offset=offset)
        if part["next_offset"] < offset or (part["text"] and part["next_offset"] == offset):
            # the same output again, for ever with --follow
            raise UsageError(f"--server {c.server}: answered GET {path} with next_offset = {part['next_offset']}, "
                             f"not past the offset {offset} it was asked for; is it a deepseek server of this version?")
        click.echo(part["text"], nl=False)
        offset = part["next_offset"]
        if not follow or (part["state"] in FINAL and not part["text"]):
            break
        if not part["text"]:
            time.sleep(1.0)
    if follow:
        job = c.get(f"/v1/tenants/{t}/jobs/{job_id}", A.JOB)
        click.echo(f"job {job_id} {job['state']}" + (f" (exit code {job['exit_code']})" if job["exit_code"] is not None else ""))


@jobs.command("cancel")
@click.argument("job_id", type=int)
@TENANT
@SERVER
def cancel(job_id: int, tenant: str | None, server: str | None) -> None:
    """Cancel a job (a running one gets SIGTERM, then SIGKILL after the server's grace)."""
    c = _client(server)
    job = c.post(f"/v1/tenants/{c.tenant(tenant)}/jobs/{job_id}/cancel", A.JOB)
    click.echo(f"job {job_id} {'stopping' if job['state'] in ('starting', 'running') else job['state']}")


def _quota_options(f: Any) -> Any:
    """The quota options, each refusing a value out of the server's range before any request."""
    from deepseek_enterprise.service.quota_ranges import QUOTA_RANGES

    for name, text in reversed([
        ("devices", "GPUs the tenant's running jobs may hold"),
        ("running-jobs", "jobs running at once (more wait)"),
        ("queued-jobs", "jobs waiting at once (more are refused)"),
        ("storage-bytes", "bytes of the tenant's folder (a full one refuses submits)"),
        ("memory-bytes", "memory limit of each job (cgroup v2 total; else RLIMIT_AS per process)"),
        ("cpu-seconds", "CPU-time limit per job process (RLIMIT_CPU)"),
        ("cpus", "CPUs' worth of time per job (cgroup v2 cpu.max only)"),
        ("gpu-memory-fraction", "let the tenant's jobs share GPUs, each capped to this fraction"),
        ("device-hours", "GPU-hours per period-days window (used up: GPU submits refused, GPU jobs stopped)"),
        ("period-days", "the device-hours window: the last N days, rolling (default 30)"),
    ]):
        f = click.option(f"--{name}", type=QUOTA_RANGES[name.replace("-", "_")].option_type(), help=text)(f)
    return f


def _quota_body(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@click.group("tenants")
def tenants() -> None:
    """Manage tenants, quotas, users and tokens on a deepseek server."""


@tenants.command("create")
@click.argument("name", type=SERVICE_NAME)
@_quota_options
@SERVER
def create(name: str, server: str | None, **quota: Any) -> None:
    """Create tenant NAME (platform admin)."""
    t = _client(server).post("/v1/tenants", A.TENANT, {"name": name, "quota": _quota_body(quota)})
    click.echo(f"tenant {t['name']} created: {json.dumps(t['quota'])}")


@tenants.command("list")
@SERVER
def list_tenants(server: str | None) -> None:
    """The tenants you are in (every tenant for a platform admin)."""
    for t in _client(server).get("/v1/tenants", A.TENANTS):
        click.echo(f"{t['name']:<24} {t['role']:<7} {json.dumps(t['quota'])}")


@tenants.command("quota")
@click.argument("name", type=SERVICE_NAME)
@_quota_options
@SERVER
def quota(name: str, server: str | None, **values: Any) -> None:
    """Show tenant NAME's quota and usage, or change it with options (platform admin)."""
    c = _client(server)
    body = _quota_body(values)
    t = (c.request("PUT", f"/v1/tenants/{name}/quota", A.TENANT, json=body) if body
         else c.get(f"/v1/tenants/{name}", A.TENANT))
    click.echo(json.dumps(t, indent=2))


@tenants.command("add-user")
@click.argument("tenant", type=SERVICE_NAME)
@click.argument("user", type=SERVICE_NAME)
@click.option("--role", type=click.Choice(ROLES), default="member", show_default=True)
@SERVER
def add_user(tenant: str, user: str, role: str, server: str | None) -> None:
    """Add USER to TENANT with a role, or change its role (tenant admin)."""
    r = _client(server).post(f"/v1/tenants/{tenant}/users", A.MEMBERSHIP, {"name": user, "role": role})
    click.echo(f"{r['user']} is {r['role']} in {r['tenant']}")


@tenants.command("token")
@click.argument("tenant", type=SERVICE_NAME)
@click.argument("user", type=SERVICE_NAME)
@click.option("--expires-days", type=FiniteFloat(MIN_DAYS, MAX_DAYS), default=90, show_default=True,
              help=f"Days until the token expires, from {MIN_DAYS:.3g} ({MIN_DAYS * 24:g} h) to {MAX_DAYS:g}.")
@click.option("--name", type=TokenLabel(), default="", help="A label for the token (one line, at most 63 characters).")
@SERVER
def token(tenant: str, user: str, expires_days: float, name: str, server: str | None) -> None:
    """A new API token for USER of TENANT, printed once (keep it: only its hash is stored)."""
    r = _client(server).post(f"/v1/tenants/{tenant}/users/{user}/tokens", A.NEW_TOKEN,
                                {"name": name, "expires_in_days": expires_days})
    click.echo(r["token"])
    click.echo(f"token {r['token_id']} for {r['user']}, expires {r['expires_at']}; shown once", err=True)


@tenants.command("revoke")
@click.argument("token_id", type=TokenId())
@SERVER
def revoke(token_id: str, server: str | None) -> None:
    """Revoke token TOKEN_ID (the 12 hex digits after dsk_)."""
    _client(server).request("DELETE", f"/v1/tokens/{token_id}", A.ANY_OBJECT)
    click.echo(f"token {token_id} revoked")


@tenants.command("audit")
@click.option("--tenant", type=SERVICE_NAME, metavar="NAME", help="Only this tenant's entries (tenant admin); default all (platform admin).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@SERVER
def audit(tenant: str | None, limit: int, server: str | None) -> None:
    """The newest audit log entries."""
    for e in _client(server).get("/v1/audit", A.AUDIT, tenant=tenant, limit=limit):
        # the tenant, target and result hold what a refused request named (any characters): escaped, one line
        click.echo(f"{e['at']}  {e['actor']:<12} {shown(e['tenant']):<12} {e['action']:<14} {shown(e['target'])}: "
                   f"{shown(e['result'])}")


jobs.add_command(files)
jobs.add_command(download)
