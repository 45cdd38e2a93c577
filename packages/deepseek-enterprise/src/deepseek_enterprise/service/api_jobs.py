"""Routes for jobs: ``/v1/tenants/{tenant}/jobs`` (submit, list), ``.../jobs/{id}`` (show),
``.../jobs/{id}/logs`` (the log from a byte offset), ``.../jobs/{id}/cancel``.

Any role reads the tenant's jobs; a member (or admin) submits; a member cancels its own jobs, an
admin any of the tenant's. A job of another tenant is 404 exactly like a job that does not exist.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import click
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from deepseek.plugins.host import get_host
from deepseek_enterprise.service import jobcheck, jobpaths, quotas
from deepseek_enterprise.service.api import Caller, JobId, Service, Svc, mutation
from deepseek_enterprise.service.auth import ApiError, Principal, tenant_row
from deepseek_enterprise.service.models import COMMANDS, Job
from deepseek_enterprise.service.names import JOB_STATES as STATES
from deepseek_enterprise.service.studycheck import runs_study

router = APIRouter(prefix="/v1/tenants/{tenant}/jobs")
MAX_LOG_READ = 1 << 20


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    command: Annotated[str, Field(pattern="^(" + "|".join(COMMANDS) + ")$")]
    args: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=256)
    config: Annotated[str, Field(max_length=jobpaths.MAX_FILE_BYTES)] | None = None
    """The job's config.toml text (``train`` and ``tune`` get it as their CONFIG argument)."""
    files: dict[str, Annotated[str, Field(max_length=jobpaths.MAX_FILE_BYTES)]] = Field(default_factory=dict,
                                                                                        max_length=16)
    """Further text files written into the workspace (a ``tune`` space file, ...)."""
    devices: int = Field(default=0, ge=0, le=4096)

    @field_validator("config")
    @classmethod
    def _no_nul(cls, text: str | None) -> str | None:
        """A NUL is never TOML (the job would refuse it), and PostgreSQL stores no text holding one."""
        if text is not None and "\x00" in text:
            raise ValueError("a NUL character is not allowed (a config is TOML text)")
        return text


def _job(s: Any, tenant_id: int, job_id: int, tenant: str) -> Job:
    job = s.get(Job, job_id)
    if job is None or job.tenant_id != tenant_id:
        raise ApiError(404, f"no job {job_id} in tenant {tenant!r}")
    return job


@router.post("", status_code=201)
def submit(tenant: str, body: JobIn, who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """Queue a job (member): refused with the reason when over quota, naming paths outside the
    tenant's folder, or with arguments or a config its command would refuse (``jobcheck``)."""
    refused, runs = _command_refusal(body, svc)  # before the transaction: no database lock held while parsing
    if refused is None and runs_study(runs):  # a tune job's study, checked in a child process (seconds): no lock
        refused = _study_refusal(tenant, body, who, svc)
    with mutation(svc, who, "job.submit", tenant=tenant, target=f"{body.command} job") as (s, out):
        t = tenant_row(s, who, tenant, "member", lock=True)
        tenant_root = jobpaths.tenant_dir(svc.root, t.name)
        quotas.check_submit(s, t, body.devices, svc.pool_size, tenant_root)
        job = Job(tenant_id=t.id, user_id=who.user_id, command=body.command, args=body.args, config=body.config,
                  files=body.files, devices=body.devices)
        s.add(job)
        s.flush()
        job.workspace = str(jobpaths.job_dir(svc.root, t.name, job.id))
        try:
            jobpaths.check_job(body.args, body.config, body.files, tenant_root, tenant_root / "jobs" / str(job.id))
        except jobpaths.PathRefused as exc:
            raise ApiError(422, str(exc)) from None
        if refused is not None:  # after the role, the quotas and the paths, as before this check
            raise ApiError(422, refused)
        out.target = f"job {job.id} ({body.command})"
        s.flush()
        result = job.as_dict()
    svc.wake()
    return result


def _command_refusal(body: JobIn, svc: Service) -> tuple[str | None, click.Command | None]:
    """The line the job's command would refuse its arguments or config with (``jobcheck``), or None,
    and the command the job runs (``jobcheck.check_command``'s answer; None with a line, or where
    the job only prints a help). Its files are read as the server's executor lays out the job's
    workspace (``Executor.at_start``; the default layout when nothing runs jobs); that method
    failing its contract is the line too."""
    from deepseek_enterprise.service.executor_calls import ExecutorBroke, call_executor

    scheduler = svc.scheduler
    at_start = jobpaths.at_start if scheduler is None else (
        lambda path, has_config, files: call_executor(scheduler.executor, scheduler.origin, "at_start", path,
                                                      has_config, files, allowed=()))
    try:
        config = None if body.config is None else jobpaths.parsed_config(body.config)
        return None, jobcheck.check_command(body.command, body.args, config, svc.host or get_host(), body.files,
                                            at_start)
    except (jobpaths.PathRefused, jobcheck.JobRefused, ExecutorBroke) as exc:
        return str(exc), None


def _study_refusal(tenant: str, body: JobIn, who: Principal, svc: Service) -> str | None:
    """For a job that passed ``jobcheck`` and runs a study (``studycheck.runs_study``: enterprise's
    ``tune``, not its ``--help``), the line its study's check before the first trial would refuse
    it with, run in a child process in its workspace laid out (``studycheck.study_refusal``; the
    server's executor lays it out as by default), or None. Only
    for a job the submit accepts as far as it tells before its transaction (role, quotas, paths:
    the child reads the files its config names); the transaction checks them again and refuses
    with this line after them. None without the child on a server run without the check
    (``Service.study_check``), for a job naming a file it reads by an absolute path, and for a
    member whose refused checks (and checks running) reached ``Service.study_refusals``' limit; the child runs with
    the job's limits (its tenant's ``memory_bytes``, ``cpu_seconds`` and ``cpus``), applied as the
    executor applies them to its jobs (``Executor.local_limits``)."""
    from deepseek_enterprise.service import studycheck
    from deepseek_enterprise.service.executor_base import plugin_env

    scheduler = svc.scheduler
    executor, origin = (None, "") if scheduler is None else (scheduler.executor, scheduler.origin)
    if not svc.study_check or not studycheck.lays_out_default(executor):
        return None
    try:
        with svc.store.session() as s:
            t = tenant_row(s, who, tenant, "member")
            tenant_root = jobpaths.tenant_dir(svc.root, t.name)
            quotas.check_submit(s, t, body.devices, svc.pool_size, tenant_root)
            jobpaths.check_job(body.args, body.config, body.files, tenant_root, tenant_root / "jobs" / "0")
            memory_bytes, cpu_seconds, cpus = t.quota.memory_bytes, t.quota.cpu_seconds, t.quota.cpus
    except (ApiError, jobpaths.PathRefused):
        return None  # the transaction refuses it so, as without this check
    if jobpaths.names_absolute_path(body.args, body.config, body.files, unread=studycheck.UNREAD_OPTIONS):
        return None  # a file of the tenant's folder may be written before the job starts: checked when it runs
    if not svc.study_refusals.begin(who.user_id):
        return None  # this member's refused checks (and checks running) reached the rate: checked when it runs
    refused = None
    try:
        limits = studycheck.local_limits(executor, origin)
        if limits is None:
            return None  # the executor broke its contract there (logged): the job checks it when it runs
        env = scheduler.plugin_env if scheduler is not None else plugin_env((svc.host or get_host()).settings)
        refused = studycheck.study_refusal(jobcheck.job_argv(body.command, body.config is not None, body.args),
                                           body.config, body.files, env, memory_bytes, cpu_seconds, cpus, limits,
                                           tenant=tenant)
        return refused
    finally:
        svc.study_refusals.end(who.user_id, refused is not None)


@router.get("")
def list_jobs(tenant: str, state: str | None = Query(default=None, pattern="^(" + "|".join(STATES) + ")$"),
              limit: int = Query(default=100, ge=1, le=10_000), who: Principal = Caller,
              svc: Service = Svc) -> list[dict[str, Any]]:
    """The tenant's jobs, newest first (any role)."""
    with svc.store.session() as s:
        t = tenant_row(s, who, tenant)
        query = select(Job).where(Job.tenant_id == t.id).order_by(Job.id.desc()).limit(limit)
        if state is not None:
            query = query.where(Job.state == state)
        return [j.as_dict() for j in s.scalars(query).all()]


@router.get("/{job_id}")
def show(tenant: str, job_id: JobId, who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """One job (any role)."""
    with svc.store.session() as s:
        t = tenant_row(s, who, tenant)
        return _job(s, t.id, job_id, tenant).as_dict()


@router.get("/{job_id}/logs")
def logs(tenant: str, job_id: JobId, offset: int = Query(default=0, ge=0), who: Principal = Caller,
         svc: Service = Svc) -> dict[str, Any]:
    """The job's output from byte ``offset`` (at most 1 MiB per call) and the next offset."""
    with svc.store.session() as s:
        t = tenant_row(s, who, tenant)
        job = _job(s, t.id, job_id, tenant)
        path = jobpaths.job_dir(svc.root, t.name, job.id) / "job.log"
        state = job.state
    try:  # never through a link the job may have put in place of its log
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        data = b""
    except OSError:
        raise ApiError(409, f"job {job_id}: its job.log is not a regular file") from None
    else:
        with os.fdopen(fd, "rb") as f:  # an offset at or past the end reads nothing (never a seek error)
            data = os.pread(f.fileno(), MAX_LOG_READ, offset) if offset < os.fstat(f.fileno()).st_size else b""
    return {"text": data.decode("utf-8", errors="replace"), "next_offset": offset + len(data), "state": state}


@router.post("/{job_id}/cancel")
def cancel(tenant: str, job_id: JobId, who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """Cancel a job: a queued one at once, a starting or running one by SIGTERM to its process group (SIGKILL
    after the grace). A member cancels its own jobs, an admin any of the tenant's."""
    with mutation(svc, who, "job.cancel", tenant=tenant, target=f"job {job_id}") as (s, out):
        t = tenant_row(s, who, tenant, "member", lock=True)  # not while the scheduler starts one of its jobs
        job = _job(s, t.id, job_id, tenant)
        if job.user_id != who.user_id and who.role(tenant) != "admin":
            raise ApiError(403, f"job {job_id} is {job.user.name}'s; members cancel their own jobs")
        if job.state == "queued":
            job.move("cancelled", message=f"cancelled by {who.name} before it started")
        elif job.state in ("starting", "running"):  # a starting one is stopped once it runs
            job.cancel_requested = True
            out.result = "ok: stopping"
        else:
            raise ApiError(409, f"job {job_id} is already {job.state}")
        result = job.as_dict()
    svc.wake()
    return result
