"""The service's tables (SQLAlchemy 2.x ORM): tenants with their quota, users, memberships with a
role per tenant, API tokens (hashes only), jobs with a checked state machine, and the append-only
audit log.

Job states: ``queued -> starting -> running -> succeeded | failed | cancelled | lost``. A job is
committed ``starting`` before the executor starts it and ``running`` (with the executor's handle)
after; ``starting`` counts as running for every quota, and ``started_at`` is the time of the
``starting`` commit (so device-hours count from there, also for a start found after a restart). A queued job may also be cancelled (never
started); a starting one may fail to start (its workspace could not be prepared, the executor
refused), go back to ``queued`` (the executor cannot take it now, or a server killed while
starting it finds it never started) or be ``cancelled`` (that, with its cancel asked); a running
job found gone may go back to ``queued`` (the server's requeue-lost policy, ``scheduler``).
:meth:`Job.move` is the one way a state changes and refuses any other transition.

:class:`DeviceUse` keeps one row per ended run of a job that held devices (devices, start, end):
with the running jobs, the device-hours a tenant used in a period (``quotas.device_hours_used``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

COMMANDS = ("train", "eval", "tune", "compress", "bench")
"""The deepseek commands a job may run."""

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "lost"})
ACTIVE_STATES = ("starting", "running")
"""States in which a job holds a slot, its devices and its place in its tenant's running jobs."""
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"starting", "cancelled"}),
    "starting": frozenset({"running", "failed", "queued", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "lost", "queued"}),
    **{s: frozenset() for s in FINAL_STATES},
}
"""Allowed state changes; a final state never changes again (``starting -> queued``: not started
after all; ``running -> queued``: a lost job requeued)."""


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC (stored as such; SQLite gives it back naive, see :func:`aware`)."""
    return dt.datetime.now(dt.timezone.utc)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """A datetime read back from the database as aware UTC (SQLite drops the zone)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class StateError(RuntimeError):
    """A job state change that the state machine does not allow (a bug, never user input)."""


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_start_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    """When a job of this tenant last started (the fair-share tie-break)."""
    quota: Mapped[Quota] = relationship(back_populates="tenant", uselist=False, cascade="all, delete-orphan")


class Quota(Base):
    """One tenant's limits; ``None`` means unlimited where noted."""

    __tablename__ = "quotas"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    devices: Mapped[int] = mapped_column(Integer, default=0)
    """GPUs the tenant's running jobs may hold at once (a job asking more is refused)."""
    running_jobs: Mapped[int] = mapped_column(Integer, default=2)
    """Jobs running at once, at least :data:`.quota_ranges.MIN_RUNNING_JOBS`; more wait in the queue."""
    queued_jobs: Mapped[int] = mapped_column(Integer, default=20)
    """Jobs waiting at once; a submit past it is refused (429)."""
    device_hours: Mapped[float | None] = mapped_column(default=None)
    """Device-hours per rolling ``period_days`` window: a submit asking devices is refused (409)
    when they are used up, and the tenant's running device jobs are stopped."""
    period_days: Mapped[int] = mapped_column(Integer, default=30)
    """The device-hours window: the last ``period_days`` days (rolling, not calendar)."""
    storage_bytes: Mapped[int | None] = mapped_column(default=None)
    """Bytes of the tenant's folder; a submit when it is full is refused (409)."""
    memory_bytes: Mapped[int | None] = mapped_column(default=None)
    """Memory limit of each job: its cgroup's memory.max (a total over its processes) where cgroup
    v2 is used, else the address-space limit of each of its processes (RLIMIT_AS)."""
    cpu_seconds: Mapped[int | None] = mapped_column(default=None)
    """CPU-time limit of each job process (RLIMIT_CPU)."""
    cpus: Mapped[float | None] = mapped_column(default=None)
    """CPUs' worth of time each job may use (cgroup cpu.max; not enforced under rlimits)."""
    gpu_memory_fraction: Mapped[float | None] = mapped_column(default=None)
    """None: the tenant's jobs hold whole GPUs. A fraction in (0, 1]: its jobs may share GPUs
    (``gpushare``), each capped to this fraction of each GPU's memory."""
    tenant: Mapped[Tenant] = relationship(back_populates="quota")

    FIELDS = ("devices", "running_jobs", "queued_jobs", "device_hours", "period_days", "storage_bytes",
              "memory_bytes", "cpu_seconds", "cpus", "gpu_memory_fraction")

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    memberships: Mapped[list[Membership]] = relationship(back_populates="user", cascade="all, delete-orphan")


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "tenant_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    role: Mapped[str] = mapped_column(String(16))
    user: Mapped[User] = relationship(back_populates="memberships")
    tenant: Mapped[Tenant] = relationship()


class Token(Base):
    """An API token: ``token_id`` is the public prefix used to find the row, ``secret_hash`` the
    scrypt hash of the secret part (``tokens.hash_secret``); the token itself is never stored."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(63), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    user: Mapped[User] = relationship()


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    command: Mapped[str] = mapped_column(String(16))
    args: Mapped[list[str]] = mapped_column(JSON, default=list)
    config: Mapped[str | None] = mapped_column(Text, default=None)
    """The job's config.toml text (written into its workspace), if any."""
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Further small text files written into the workspace (name -> text)."""
    devices: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    exit_code: Mapped[int | None] = mapped_column(default=None)
    workspace: Mapped[str] = mapped_column(String(1024), default="")
    pid: Mapped[int | None] = mapped_column(default=None)
    pid_start: Mapped[str | None] = mapped_column(String(32), default=None)
    """The process's start time (/proc/PID/stat), so a reused pid is never mistaken for it; for
    the Slurm executor the job name (``starting``: what ``Executor.reserve`` returned)."""
    gpus: Mapped[str] = mapped_column(String(255), default="")
    """CUDA_VISIBLE_DEVICES the job got."""
    gpu_fraction: Mapped[float | None] = mapped_column(default=None)
    """The share of each of its GPUs the job holds (None: the GPUs whole)."""
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """How many times the job was started (more than 1: it was lost and requeued)."""
    tenant: Mapped[Tenant] = relationship()
    user: Mapped[User] = relationship()

    def move(self, new: str, **fields: Any) -> None:
        """Change the state to ``new`` (checked against :data:`TRANSITIONS`) and set ``fields``."""
        if new not in TRANSITIONS[self.state]:
            raise StateError(f"job {self.id}: {self.state} -> {new} is not a valid transition")
        old, self.state = self.state, new
        now = utcnow()
        if new == "starting":  # it holds its devices from here on (device-hours count from here)
            self.started_at = now
        elif new == "running":  # kept from its starting commit: a start found after a restart
            self.started_at = self.started_at or now  # counts the time the server was down
            self.attempts = (self.attempts or 0) + 1
        elif new == "queued":  # requeued: the next start is a new process
            self.started_at, self.pid, self.pid_start, self.gpus, self.gpu_fraction = None, None, None, "", None
        elif new in FINAL_STATES:
            self.finished_at = now
            if old == "starting":  # it never ran
                self.started_at = None
        for key, value in fields.items():
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        def iso(v: dt.datetime | None) -> str | None:
            v = aware(v)
            return v.isoformat() if v is not None else None

        return {"id": self.id, "tenant": self.tenant.name, "user": self.user.name, "command": self.command,
                "args": list(self.args), "devices": self.devices, "state": self.state,
                "created_at": iso(self.created_at), "started_at": iso(self.started_at),
                "finished_at": iso(self.finished_at), "exit_code": self.exit_code, "workspace": self.workspace,
                "gpus": self.gpus, "gpu_fraction": self.gpu_fraction, "cancel_requested": self.cancel_requested,
                "message": self.message, "attempts": self.attempts}


class DeviceUse(Base):
    """One ended run of a job that held devices: ``devices`` from ``started_at`` to ``ended_at``
    (when the server saw it end). Written by the scheduler with the job's state change."""

    __tablename__ = "device_use"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    devices: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column()
    ended_at: Mapped[dt.datetime] = mapped_column(index=True)


class AuditEntry(Base):
    """One mutating action: who, in which tenant, what (action and target), when, the result.
    Append-only: the ORM refuses to update or delete rows (``store``), and on SQLite triggers
    refuse UPDATE and DELETE in the database itself."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(63))
    tenant: Mapped[str] = mapped_column(String(63), default="")
    action: Mapped[str] = mapped_column(String(63))
    target: Mapped[str] = mapped_column(String(255), default="")
    result: Mapped[str] = mapped_column(Text, default="ok")

    def as_dict(self) -> dict[str, Any]:
        at = aware(self.at)
        return {"id": self.id, "at": at.isoformat() if at else None, "actor": self.actor, "tenant": self.tenant,
                "action": self.action, "target": self.target, "result": self.result}
