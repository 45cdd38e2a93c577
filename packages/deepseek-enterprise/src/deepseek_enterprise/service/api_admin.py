"""Routes for tenants, quotas, users, tokens and the audit log.

- ``POST /v1/tenants``, ``PUT /v1/tenants/{t}/quota``: platform admin.
- ``GET /v1/tenants``: the tenants the caller is in (all for a platform admin);
  ``GET /v1/tenants/{t}``: any role there.
- ``POST|GET /v1/tenants/{t}/users``, ``DELETE /v1/tenants/{t}/users/{name}``: tenant admin.
- ``POST /v1/tenants/{t}/users/{name}/tokens``: the user itself, or a tenant admin for a user who
  is no platform admin and belongs to no tenant where the issuer is not admin (a token acts in all
  of its user's tenants, so issuing one must not reach past the issuer's own rights).
- ``DELETE /v1/tokens/{id}``: revoke, by the same rule.
- ``GET /v1/audit``: a platform admin (any tenant), a tenant admin (``?tenant=`` one of theirs).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from deepseek_enterprise.service import tokens
from deepseek_enterprise.service.api import Caller, Service, Svc, mutation
from deepseek_enterprise.service.auth import ApiError, Principal, tenant_row
from deepseek_enterprise.service.models import (
    AuditEntry,
    Membership,
    Quota,
    Tenant,
    Token,
    User,
    utcnow,
)
from deepseek_enterprise.service.names import NAME, TOKEN_LABEL, TOKEN_LABEL_MAX
from deepseek_enterprise.service.quota_ranges import QUOTA_RANGES

router = APIRouter(prefix="/v1")


def _quota(name: str) -> Any:
    """A ``QuotaIn`` field: optional, in its range of :data:`~.quota_ranges.QUOTA_RANGES` (the clients' too)."""
    return Field(default=None, **QUOTA_RANGES[name].bounds())


class QuotaIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    devices: int | None = _quota("devices")
    running_jobs: int | None = _quota("running_jobs")
    queued_jobs: int | None = _quota("queued_jobs")
    device_hours: float | None = _quota("device_hours")
    period_days: int | None = _quota("period_days")
    storage_bytes: int | None = _quota("storage_bytes")
    memory_bytes: int | None = _quota("memory_bytes")
    cpu_seconds: int | None = _quota("cpu_seconds")
    cpus: float | None = _quota("cpus")
    gpu_memory_fraction: float | None = _quota("gpu_memory_fraction")


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, Field(pattern=NAME)]
    quota: QuotaIn | None = None


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, Field(pattern=NAME)]
    role: Annotated[str, Field(pattern=r"^(viewer|member|admin)$")] = "member"


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    name: Annotated[str, Field(max_length=TOKEN_LABEL_MAX, pattern=TOKEN_LABEL)] = ""
    """A label of one line: no control characters (:data:`.names.TOKEN_LABEL`)."""
    expires_in_days: float | None = Field(default=90, le=tokens.MAX_DAYS)
    """Days until the token expires, at least one hour's worth (:data:`tokens.MIN_DAYS`); null: never."""

    @field_validator("expires_in_days")
    @classmethod
    def _at_least_an_hour(cls, days: float | None) -> float | None:
        """A lifetime under :data:`tokens.MIN_DAYS` made a token that expired before it could be used."""
        if days is not None and days < tokens.MIN_DAYS:
            raise ValueError(f"{days:g} days is less than the shortest lifetime a token may have, one hour "
                             f"({tokens.MIN_DAYS:.4g} days); give a longer one, or null for a token that never expires")
        return days


def _tenant_dict(t: Tenant) -> dict[str, Any]:
    return {"name": t.name, "quota": t.quota.as_dict()}


def _apply_quota(quota: Quota, data: QuotaIn) -> None:
    for key, value in data.model_dump(exclude_unset=True).items():
        if value is None and key in ("devices", "running_jobs", "queued_jobs", "period_days"):
            raise ApiError(422, f"invalid request: quota.{key} cannot be null")
        setattr(quota, key, value)


@router.post("/tenants", status_code=201)
def create_tenant(body: TenantIn, who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """Create a tenant with its quota (platform admin)."""
    with mutation(svc, who, "tenant.create", tenant=body.name, target=f"tenant {body.name}") as (s, _out):
        who.require_platform_admin()
        if s.scalar(select(Tenant).where(Tenant.name == body.name)) is not None:
            raise ApiError(409, f"tenant {body.name!r} exists; choose another name or see 'deepseek tenants list'")
        tenant = Tenant(name=body.name, quota=Quota())
        s.add(tenant)
        s.flush()
        if body.quota is not None:
            _apply_quota(tenant.quota, body.quota)
        s.flush()
        return _tenant_dict(tenant)


@router.get("/tenants")
def list_tenants(who: Principal = Caller, svc: Service = Svc) -> list[dict[str, Any]]:
    """The tenants the caller is in (every tenant for a platform admin)."""
    with svc.store.session() as s:
        rows = s.scalars(select(Tenant).order_by(Tenant.name)).all()
        return [_tenant_dict(t) | {"role": who.role(t.name)} for t in rows if who.role(t.name)]


@router.get("/tenants/{tenant}")
def show_tenant(tenant: str, who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """A tenant, its quota and what its jobs hold now."""
    from deepseek_enterprise.service.quotas import Usage, usage

    with svc.store.session() as s:
        t = tenant_row(s, who, tenant)
        u = usage(s).get(t.id, Usage(0, 0))
        return _tenant_dict(t) | {"role": who.role(t.name), "running_jobs": u.running, "devices_held": u.devices}


@router.put("/tenants/{tenant}/quota")
def set_quota(tenant: str, body: QuotaIn, who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """Change some of a tenant's quota fields (platform admin)."""
    with mutation(svc, who, "tenant.quota", tenant=tenant, target=f"tenant {tenant}") as (s, out):
        who.require_platform_admin()
        t = tenant_row(s, who, tenant, lock=True, creatable=True)
        _apply_quota(t.quota, body)
        out.result = f"ok: {body.model_dump(exclude_unset=True)}"
        svc.wake()
        return _tenant_dict(t)


@router.post("/tenants/{tenant}/users", status_code=201)
def add_user(tenant: str, body: UserIn, who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """Add a user to the tenant with a role (created if new), or change its role (tenant admin)."""
    with mutation(svc, who, "user.add", tenant=tenant, target=f"user {body.name} as {body.role}") as (s, _out):
        t = tenant_row(s, who, tenant, "admin", creatable=True)
        user = s.scalar(select(User).where(User.name == body.name))
        if user is None:
            user = User(name=body.name)
            s.add(user)
            s.flush()
        m = s.scalar(select(Membership).where(Membership.user_id == user.id, Membership.tenant_id == t.id))
        if m is None:
            s.add(Membership(user_id=user.id, tenant_id=t.id, role=body.role))
        else:
            m.role = body.role
        return {"user": user.name, "tenant": t.name, "role": body.role}


@router.get("/tenants/{tenant}/users")
def list_users(tenant: str, who: Principal = Caller, svc: Service = Svc) -> list[dict[str, Any]]:
    """The tenant's users and roles (tenant admin)."""
    with svc.store.session() as s:
        t = tenant_row(s, who, tenant, "admin")
        rows = s.execute(select(User.name, Membership.role).join(Membership, Membership.user_id == User.id)
                         .where(Membership.tenant_id == t.id).order_by(User.name)).all()
        return [{"user": n, "role": r} for n, r in rows]


@router.delete("/tenants/{tenant}/users/{name}")
def remove_user(tenant: str, name: str, who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """Take a user out of the tenant (tenant admin); its jobs stay."""
    with mutation(svc, who, "user.remove", tenant=tenant, target=f"user {name}") as (s, _out):
        t = tenant_row(s, who, tenant, "admin")
        m = s.scalar(select(Membership).join(User, Membership.user_id == User.id)
                     .where(User.name == name, Membership.tenant_id == t.id))
        if m is None:
            raise ApiError(404, f"no user {name!r} in tenant {tenant!r}")
        s.delete(m)
        return {"user": name, "tenant": tenant, "removed": True}


def _may_manage_tokens_of(s: Any, who: Principal, user: User) -> bool:
    if who.platform_admin or who.user_id == user.id:
        return True
    if user.platform_admin:
        return False
    tenants = s.scalars(select(Tenant.name).join(Membership, Membership.tenant_id == Tenant.id)
                        .where(Membership.user_id == user.id)).all()
    return bool(tenants) and all(who.role(t) == "admin" for t in tenants)


@router.post("/tenants/{tenant}/users/{name}/tokens", status_code=201)
def create_token(tenant: str, name: str, body: TokenIn, who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """A new token for a user of the tenant, shown once (see the module docstring for who may)."""
    with mutation(svc, who, "token.create", tenant=tenant, target=f"user {name}") as (s, out):
        t = tenant_row(s, who, tenant)
        user = s.scalar(select(User).join(Membership, Membership.user_id == User.id)
                        .where(User.name == name, Membership.tenant_id == t.id))
        if user is None:
            raise ApiError(404, f"no user {name!r} in tenant {tenant!r}")
        if not _may_manage_tokens_of(s, who, user):
            raise ApiError(403, f"tokens of {name!r} need an admin of every tenant {name!r} is in")
        token, token_id, hashed = tokens.new_token()
        expires = utcnow() + dt.timedelta(days=body.expires_in_days) if body.expires_in_days else None
        s.add(Token(token_id=token_id, secret_hash=hashed, user_id=user.id, name=body.name, expires_at=expires))
        out.target = f"user {name}, token {token_id}"
        return {"token": token, "token_id": token_id, "user": name,
                "expires_at": expires.isoformat() if expires else None}


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: str, who: Principal = Caller, svc: Service = Svc) -> dict[str, Any]:
    """Revoke a token (its user, or an admin of every tenant its user is in)."""
    problem = tokens.token_id_problem(token_id)
    if problem is not None:  # refused before the audit: a whole token's secret is never written there
        raise ApiError(422, f"token id: {problem}")
    with mutation(svc, who, "token.revoke", target=f"token {token_id}") as (s, _out):
        row = s.scalar(select(Token).where(Token.token_id == token_id))
        user = s.get(User, row.user_id) if row is not None else None
        if row is None or user is None or not _may_manage_tokens_of(s, who, user):
            raise ApiError(404, f"no token {token_id!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return {"token_id": token_id, "revoked": True}


@router.get("/audit")
def audit(tenant: str | None = Query(default=None, pattern=NAME), limit: int = Query(default=200, ge=1, le=10_000),
          who: Principal = Caller, svc: Service = Svc) -> list[dict[str, Any]]:
    """The newest audit entries (platform admin: all or ``tenant``'s; tenant admin: ``tenant``'s)."""
    with svc.store.session() as s:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if tenant is not None:
            tenant_row(s, who, tenant, "admin")
            query = query.where(AuditEntry.tenant == tenant)
        else:
            who.require_platform_admin()
        return [e.as_dict() for e in s.scalars(query).all()]
