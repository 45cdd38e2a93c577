"""The HTTP API: the application, its errors, authentication and the audited transaction.

Every error is ``{"detail": "<one line>"}`` with its status: 401 (no, wrong, revoked or expired
token), 403 (a role too weak in a tenant the caller is in), 404 (anything the caller may not see:
another tenant, its jobs), 409/429 (quotas), 413 (a body over :data:`MAX_BODY`), 422 (a malformed
request: unknown fields, wrong types, bad names, a NUL character in the URL's path), 500
("internal error", never a traceback).

Every mutating request runs in :func:`mutation`: the change and its audit entry commit together;
a refused one is rolled back and its refusal audited in a transaction of its own. The OpenAPI
schema is served at ``/openapi.json`` (``/docs`` for a browser).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from deepseek_enterprise.service.auth import ApiError, Authenticator, Principal
from deepseek_enterprise.service.quota_ranges import INT64_MAX
from deepseek_enterprise.service.store import Store
from deepseek_enterprise.service.studycheck import Refusals

MAX_BODY = 4 << 20
log = logging.getLogger("deepseek.server")


@dataclass
class Service:
    """What the routes share: the store, the scheduler (or None: nothing runs), the root folder,
    the device pool size, the plugin host whose commands check a job's command line at submit
    (None: the process's), and the server's setting for a ``tune`` job's study check at submit."""

    store: Store
    root: Path
    scheduler: Any = None
    pool_size: int = 0
    auth: Authenticator | None = None
    host: Any = None
    study_check: bool = True
    """Whether a ``tune`` job's study is checked at submit, in a child process (``studycheck``;
    ``deepseek server --no-study-check``: False, the job checks it when it runs)."""
    study_refusals: Refusals = field(default_factory=Refusals)
    """The study checks that refused each member's jobs lately: past its limit, a member's
    ``tune`` jobs are checked when they run (``studycheck.Refusals``)."""

    def wake(self) -> None:
        if self.scheduler is not None:
            self.scheduler.wake()


def service(request: Request) -> Service:
    return request.app.state.service


def principal(request: Request) -> Principal:
    svc: Service = request.app.state.service
    assert svc.auth is not None
    with svc.store.session() as s:
        return svc.auth.principal(s, request.headers.get("authorization"))


JobId = Annotated[int, PathParam(ge=1, le=INT64_MAX)]
"""A job id in a route's path: a positive database integer (422 otherwise)."""

Caller = Depends(principal)
Svc = Depends(service)


@dataclass
class Outcome:
    """The target and result a mutation records (set by the route as it learns them)."""

    target: str = ""
    result: str = "ok"


@contextlib.contextmanager
def mutation(svc: Service, who: Principal, action: str, tenant: str = "",
             target: str = "") -> Iterator[tuple[Session, Outcome]]:
    """One audited transaction (module docstring)."""
    out = Outcome(target=target)
    try:
        with svc.store.session() as s:
            yield s, out
            svc.store.audit(who.name, action, tenant=tenant, target=out.target, result=out.result, session=s)
    except ApiError as exc:
        svc.store.audit(who.name, action, tenant=tenant, target=out.target,
                        result=f"refused {exc.status}: {exc.message}")
        raise


def _one_line_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "invalid request: " + "; ".join(parts)


def create_app(svc: Service) -> FastAPI:
    """The FastAPI application of ``svc``."""
    from deepseek_enterprise.service import api_admin, api_artefacts, api_jobs, web

    if svc.auth is None:
        svc.auth = Authenticator()
    app = FastAPI(title="DeepSeek job service", version="1",
                  description="Multi-tenant deepseek jobs: tenants, users, tokens, quotas, jobs (docs/service.md).")
    app.state.service = svc

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        if "\x00" in request.scope.get("path", ""):  # no name holds one; PostgreSQL refuses it in any query
            return JSONResponse({"detail": "invalid request: the URL's path holds a NUL character (%00); no tenant, "
                                           "user, job or token name does"}, status_code=422)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return JSONResponse({"detail": f"request body over {MAX_BODY} bytes"}, status_code=413)
        if request.method in ("POST", "PUT", "PATCH") and length is None:
            body = await request.body()
            if len(body) > MAX_BODY:
                return JSONResponse({"detail": f"request body over {MAX_BODY} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line_validation(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=exc)
        return JSONResponse({"detail": "internal error (see the server log)"}, status_code=500)

    @app.get("/v1/me")
    def me(who: Principal = Caller) -> dict[str, Any]:
        """The caller: user name, platform admin or not, role per tenant."""
        return {"user": who.name, "platform_admin": who.platform_admin, "tenants": who.roles,
                "token_id": who.token_id}

    app.include_router(api_admin.router)
    app.include_router(api_jobs.router)
    app.include_router(api_artefacts.router)
    app.include_router(web.router)
    return app
