"""Who is calling and what they may do.

A request carries ``Authorization: Bearer dsk_<id>.<secret>``. The row is found by the public id;
a revoked or expired token, or a secret that does not verify (scrypt, constant-time comparison),
is 401 with one line and nothing else. A verified secret is remembered for
:data:`CACHE_S` seconds as its SHA-256 (so a client's burst of requests pays the slow KDF once);
revocation and expiry are read from the database on every request all the same.

Roles per tenant (``names.ROLES``): viewer reads the tenant's jobs; member also submits jobs and
cancels its own; admin also manages the tenant's users and tokens and cancels any of its jobs. A
platform admin is admin of every tenant and manages tenants and quotas. A caller who is not in a
tenant gets 404 for it and for everything in it: existence is never confirmed.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from deepseek_enterprise.service import tokens
from deepseek_enterprise.service.models import Membership, Tenant, Token, User, aware, utcnow
from deepseek_enterprise.service.names import ROLES, name_problem

CACHE_S = 60.0


class ApiError(Exception):
    """An HTTP error with a one-line message (the API returns ``{"detail": message}``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Principal:
    """The caller: its user and role per tenant name."""

    user_id: int
    name: str
    platform_admin: bool
    roles: dict[str, str]
    token_id: str

    def role(self, tenant: str) -> str | None:
        if self.platform_admin:
            return "admin"
        return self.roles.get(tenant)

    def require(self, tenant: str, at_least: str) -> str:
        """The caller's role in ``tenant`` if it is at least ``at_least``; 404 for a tenant the
        caller is not in, 403 for one it is in with a weaker role."""
        role = self.role(tenant)
        if role is None:  # the same line for a tenant that exists and one that does not
            raise ApiError(404, f"no tenant {tenant!r}; see 'deepseek tenants list' for the tenants you are in")
        if ROLES.index(role) < ROLES.index(at_least):
            raise ApiError(403, f"tenant {tenant!r}: your role is {role}; this needs {at_least}")
        return role

    def require_platform_admin(self) -> None:
        if not self.platform_admin:
            raise ApiError(403, "this needs a platform admin")


class Authenticator:
    """Bearer token -> :class:`Principal` (see the module docstring)."""

    def __init__(self) -> None:
        self._verified: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def principal(self, session: Session, header: str | None) -> Principal:
        if not header or not header.startswith("Bearer "):
            raise ApiError(401, "missing token: send 'Authorization: Bearer <token>' (DEEPSEEK_TOKEN)")
        parts = tokens.split_token(header[len("Bearer "):].strip())
        if parts is None:
            raise ApiError(401, "invalid token")
        token_id, secret = parts
        row = session.scalar(select(Token).where(Token.token_id == token_id))
        if row is None or not self._verify(token_id, secret, row.secret_hash):
            raise ApiError(401, "invalid token")
        if row.revoked_at is not None:
            raise ApiError(401, f"token {token_id} was revoked")
        expires = aware(row.expires_at)
        if expires is not None and expires <= utcnow():
            raise ApiError(401, f"token {token_id} expired at {expires.isoformat()}")
        user = session.get(User, row.user_id)
        assert user is not None
        roles = {t.name: m.role for m, t in session.execute(
            select(Membership, Tenant).join(Tenant, Membership.tenant_id == Tenant.id)
            .where(Membership.user_id == user.id)).all()}
        return Principal(user.id, user.name, user.platform_admin, roles, token_id)

    def _verify(self, token_id: str, secret: str, stored: str) -> bool:
        digest = hashlib.sha256(f"{token_id}.{secret}.{stored}".encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._verified.get(token_id)
            if hit is not None and hmac.compare_digest(hit[0], digest) and now - hit[1] < CACHE_S:
                return True
        if not tokens.verify_secret(secret, stored):
            return False
        with self._lock:
            self._verified[token_id] = (digest, now)
        return True


def tenant_row(session: Session, principal: Principal, name: str, at_least: str = "viewer",
               lock: bool = False, creatable: bool = False) -> Tenant:
    """The tenant ``name`` if the caller has ``at_least`` that role there (else 404/403). A missing
    one (only a platform admin, who is in every tenant, is told so) is 404 with the fix that fits
    the route: ``creatable`` (adding a user, setting a quota: what a new tenant is set up with), its
    creation; else (its jobs, their files, its users, tokens and audit log: a new tenant has none,
    so the name is mistyped) the list of tenants; a name no tenant can have, the name rule."""
    principal.require(name, at_least)
    query = select(Tenant).where(Tenant.name == name)
    if lock:
        query = query.with_for_update()
    tenant = session.scalar(query)
    if tenant is None:
        problem = name_problem(name)
        fix = (f"create it with 'deepseek tenants create {name}'" if creatable
               else "see 'deepseek tenants list' for the tenants there are")
        raise ApiError(404, f"no tenant {name!r}; {fix if problem is None else problem}")
    return tenant
