"""Quotas at submit time, and which queued job starts next.

At submit (inside the transaction that inserts the job, the tenant row locked):

- a job asking more devices than the tenant's ``devices`` quota, or than the server has, can
  never run: refused, 409;
- the tenant's folder at or over ``storage_bytes``: refused, 409;
- ``queued_jobs`` jobs already waiting: refused, 429 (try again later);
- a job asking devices while the tenant's ``device_hours`` of the last ``period_days`` days are
  used up (:func:`device_hours_used`): refused, 409 with the figures;
- otherwise the job is queued; reaching ``running_jobs`` or ``devices`` only means it waits.

Device-hours: a job holding N devices uses N device-hours per hour from its start until the
server sees it end (a run lost and requeued counts until it was found gone); the window is the
last ``period_days`` days before now (rolling), and only the part of a run inside it counts. A
queued job asking devices waits while they are used up; the scheduler stops the tenant's running
device jobs when they are (``scheduler``).

A job being started (state ``starting``: committed before the executor starts it) counts as
running for ``running_jobs``, ``devices``, ``device_hours``, the server's slots and its GPUs from
that commit on (its ``started_at``).

Fair share (:func:`pick_next`): among tenants with a queued job that fits now (the tenant under
``running_jobs``, enough of its ``devices`` quota and of the server's free devices, a free server
slot), the tenant with the **fewest running jobs** goes first; ties go to the tenant whose last
job **started longest ago** (never started: first), then to the lower tenant id. Within a tenant,
jobs start in submit order (lowest id first); a job that does not fit yet does not let a later
job of the same tenant overtake it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from deepseek_enterprise.service.auth import ApiError
from deepseek_enterprise.service.models import (
    ACTIVE_STATES,
    DeviceUse,
    Job,
    Quota,
    Tenant,
    aware,
    utcnow,
)


def folder_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (links not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            total += st.st_size
    return total


def check_submit(session: Session, tenant: Tenant, devices: int, pool_size: int, tenant_folder: Path) -> None:
    """Raise :class:`ApiError` if the tenant may not queue a job asking ``devices`` now."""
    quota: Quota = tenant.quota
    if devices > quota.devices:
        raise ApiError(409, f"the job asks {devices} device(s); tenant {tenant.name!r} may hold "
                            f"{quota.devices} (quota devices)")
    if devices > pool_size:
        raise ApiError(409, f"the job asks {devices} device(s); this server has {pool_size}")
    if quota.storage_bytes is not None:
        used = folder_bytes(tenant_folder)
        if used >= quota.storage_bytes:
            raise ApiError(409, f"tenant {tenant.name!r} uses {used} bytes of storage, its quota is "
                                f"{quota.storage_bytes} (quota storage_bytes): delete runs first")
    spent = device_hours_out(session, tenant, utcnow()) if devices else None
    if spent is not None:
        raise ApiError(409, f"tenant {tenant.name!r} used {spent[0]:.2f} of its {spent[1]:g} device-hours in the "
                            f"last {quota.period_days} days (quota device_hours): wait until older use leaves "
                            "the window, or ask a platform admin for more")
    queued = session.scalar(select(func.count(Job.id)).where(Job.tenant_id == tenant.id, Job.state == "queued"))
    if queued >= quota.queued_jobs:
        raise ApiError(429, f"tenant {tenant.name!r} has {queued} queued job(s), its quota is "
                            f"{quota.queued_jobs} (quota queued_jobs): wait for some to start")


def device_hours_used(session: Session, tenant_id: int, period_days: int, now: dt.datetime) -> float:
    """Device-hours the tenant's jobs used in the ``period_days`` days before ``now``: ended runs
    (:class:`DeviceUse`) and running jobs (until ``now``), each only for its part inside the window.
    Rows that cannot be a run (no start, negative devices, end before start) count nothing."""
    since = now - dt.timedelta(days=period_days)
    ended = session.execute(select(DeviceUse.devices, DeviceUse.started_at, DeviceUse.ended_at)
                            .where(DeviceUse.tenant_id == tenant_id, DeviceUse.ended_at > since)).all()
    running = session.execute(select(Job.devices, Job.started_at)
                              .where(Job.tenant_id == tenant_id, Job.state.in_(ACTIVE_STATES), Job.devices > 0)).all()
    seconds = 0.0
    for devices, start, end in [*ended, *((d, s, now) for d, s in running)]:
        start, end = aware(start), aware(end)
        if not isinstance(devices, int) or devices < 0 or start is None or end is None:
            continue
        lo, hi = max(start, since), min(end, now)
        if hi > lo:
            seconds += devices * (hi - lo).total_seconds()
    return seconds / 3600


def device_hours_out(session: Session, tenant: Tenant, now: dt.datetime) -> tuple[float, float] | None:
    """``(used, limit)`` when the tenant has a ``device_hours`` quota and has used it up, else None."""
    limit = tenant.quota.device_hours
    if limit is None:
        return None
    used = device_hours_used(session, tenant.id, tenant.quota.period_days, now)
    return (used, limit) if used >= limit else None


@dataclass(frozen=True)
class Usage:
    """What a tenant's running jobs hold (``starting`` ones count as running)."""

    running: int
    devices: int


def usage(session: Session) -> dict[int, Usage]:
    rows = session.execute(select(Job.tenant_id, func.count(Job.id), func.coalesce(func.sum(Job.devices), 0))
                           .where(Job.state.in_(ACTIVE_STATES)).group_by(Job.tenant_id)).all()
    return {t: Usage(int(n), int(d)) for t, n, d in rows}


def pick_next(session: Session, *, slots: int, free_devices: int,
              free_for: Callable[[Tenant], int] | None = None) -> Job | None:
    """The queued job to start now by the fair-share rule (module docstring), or None.
    ``free_for(tenant)``: the GPUs a job of ``tenant`` could get now (``gpushare``: a tenant
    allowed to share sees partly used GPUs too); by default ``free_devices`` for every tenant."""
    held = usage(session)
    if sum(u.running for u in held.values()) >= slots:
        return None
    heads: list[tuple[tuple[int, float, int], Job]] = []
    tenants = session.scalars(select(Tenant).where(
        Tenant.id.in_(select(Job.tenant_id).where(Job.state == "queued")))).all()
    for tenant in tenants:
        head = session.scalar(select(Job).where(Job.tenant_id == tenant.id, Job.state == "queued")
                              .order_by(Job.id).limit(1))
        if head is None:
            continue
        u = held.get(tenant.id, Usage(0, 0))
        quota = tenant.quota
        if u.running >= quota.running_jobs or u.devices + head.devices > quota.devices \
                or head.devices > (free_devices if free_for is None else free_for(tenant)):
            continue
        if head.devices and device_hours_out(session, tenant, utcnow()) is not None:
            continue  # waits until older use leaves the window (or the quota is raised)
        last = aware(tenant.last_start_at)
        heads.append(((u.running, last.timestamp() if last else float("-inf"), tenant.id), head))
    if not heads:
        return None
    return min(heads, key=lambda h: h[0])[1]


def default_quota() -> dict[str, int | float | None]:
    return {"devices": 0, "running_jobs": 2, "queued_jobs": 20, "device_hours": None, "period_days": 30,
            "storage_bytes": None, "memory_bytes": None, "cpu_seconds": None, "cpus": None,
            "gpu_memory_fraction": None}


def started(tenant: Tenant, when: dt.datetime) -> None:
    tenant.last_start_at = when
