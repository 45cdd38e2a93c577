"""The job service's HTTP API through FastAPI's TestClient (no jobs run here; the scheduler is
off, so submitted jobs stay queued): tokens, roles, tenant isolation, quotas, fair share, the
audit log, concurrent submits and a job's log. Bad input: test_service_api_input.py."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import _apiservice
import pytest
from _servicehelpers import BACKENDS, Deploy
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from deepseek_enterprise.service import quotas, tokens
from deepseek_enterprise.service.models import AuditEntry, Job, Token
from deepseek_enterprise.service.store import AppendOnlyError

YOURS = "; see 'deepseek tenants list' for the tenants you are in"
"""The end of the 404 for a tenant the caller is not in, whether it exists or not."""


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Deploy:
    return _apiservice.sqlite_template(tmp_path_factory)


@pytest.fixture(scope="module")
def postgresql_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Deploy]]:
    yield from _apiservice.postgresql_template(tmp_path_factory)


@pytest.fixture(params=BACKENDS)
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deploy]:
    yield from _apiservice.copy_of_template(request, tmp_path)


def test_tokens_are_stored_as_salted_scrypt_hashes_only(svc: Deploy) -> None:
    secrets_ = [t.split(".", 1)[1] for t in (svc.admin, *svc.tokens.values())]
    with svc.store.session() as s:
        rows = s.scalars(select(Token)).all()
        hashes = [r.secret_hash for r in rows]
    assert len(rows) == 6 and all(h.startswith("scrypt$16384$8$1$") for h in hashes)
    assert len({h.split("$")[4] for h in hashes}) == 6  # a salt per token
    with svc.store.engine.connect() as conn:  # every value of every table, on either database
        raw = "".join(str(row) for t in ("users", "tokens", "audit", "tenants", "memberships")
                      for row in conn.execute(text(f"select * from {t}")))
    svc.store.engine.dispose()
    if svc.store.sqlite:  # and the database's files themselves (WAL included)
        raw += "".join(p.read_bytes().decode("latin-1") for p in svc.root.glob("service.db*"))
    assert all(h in raw for h in hashes)  # the dump holds the rows
    for secret in secrets_:
        assert secret not in raw
    assert tokens.verify_secret(secrets_[0], hashes[0]) and not tokens.verify_secret(secrets_[0] + "x", hashes[0])


def test_wrong_revoked_and_expired_tokens_get_401(svc: Deploy) -> None:
    bob = svc.tokens["bob"]
    assert svc.call("GET", "/v1/me", bob).json()["tenants"] == {"acme": "member"}
    assert svc.call("GET", "/v1/me", None).status_code == 401
    wrong = bob[:-2] + ("AA" if not bob.endswith("AA") else "BB")
    r = svc.call("GET", "/v1/me", wrong)
    assert (r.status_code, r.json()) == (401, {"detail": "invalid token"})
    assert svc.call("GET", "/v1/me", "dsk_000000000000.abcdefghijklmnopqrstuvwxyz").status_code == 401
    token_id = bob[4:16]
    assert svc.call("DELETE", f"/v1/tokens/{token_id}", svc.tokens["gil"]).status_code == 404  # not gil's
    assert svc.call("DELETE", f"/v1/tokens/{token_id}", bob).status_code == 200
    r = svc.call("GET", "/v1/me", bob)
    assert r.status_code == 401 and r.json()["detail"] == f"token {token_id} was revoked"
    cat = svc.tokens["cat"]
    with svc.store.session() as s:
        s.scalar(select(Token).where(Token.token_id == cat[4:16])).expires_at = \
            dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    r = svc.call("GET", "/v1/me", cat)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_role_matrix(svc: Deploy) -> None:
    t = svc.tokens
    jobs = "/v1/tenants/acme/jobs"
    # submit: member and admin yes, viewer no
    assert svc.submit("acme", t["vic"]).status_code == 403
    bob_job = svc.submit("acme", t["bob"]).json()["id"]
    cat_job = svc.submit("acme", t["cat"]).json()["id"]
    ann_job = svc.submit("acme", t["ann"]).json()["id"]
    # read: every role sees every job of the tenant
    for who in ("vic", "bob", "cat", "ann"):
        assert [j["id"] for j in svc.call("GET", jobs, t[who]).json()] == [ann_job, cat_job, bob_job]
        assert svc.call("GET", f"{jobs}/{bob_job}", t[who]).json()["user"] == "bob"
        assert svc.call("GET", f"{jobs}/{bob_job}/logs", t[who]).status_code == 200
    # cancel: viewer never, member its own only, admin any
    assert svc.call("POST", f"{jobs}/{bob_job}/cancel", t["vic"]).status_code == 403
    r = svc.call("POST", f"{jobs}/{cat_job}/cancel", t["bob"])
    assert r.status_code == 403 and "members cancel their own jobs" in r.json()["detail"]
    assert svc.call("POST", f"{jobs}/{bob_job}/cancel", t["bob"]).json()["state"] == "cancelled"
    assert svc.call("POST", f"{jobs}/{cat_job}/cancel", t["ann"]).json()["state"] == "cancelled"
    r = svc.call("POST", f"{jobs}/{cat_job}/cancel", t["ann"])
    assert (r.status_code, r.json()["detail"]) == (409, f"job {cat_job} is already cancelled")
    # users and tokens: tenant admin only; tenants and quotas: platform admin only
    for who in ("vic", "bob"):
        assert svc.call("POST", "/v1/tenants/acme/users", t[who], json={"name": "eve"}).status_code == 403
        assert svc.call("GET", "/v1/tenants/acme/users", t[who]).status_code == 403
        assert svc.call("POST", "/v1/tenants/acme/users/cat/tokens", t[who], json={}).status_code == 403
    assert svc.call("POST", "/v1/tenants/acme/users", t["ann"], json={"name": "eve", "role": "viewer"}).status_code == 201
    assert svc.call("POST", "/v1/tenants/acme/users/eve/tokens", t["ann"], json={}).status_code == 201
    assert svc.call("POST", "/v1/tenants", t["ann"], json={"name": "new"}).status_code == 403
    assert svc.call("PUT", "/v1/tenants/acme/quota", t["ann"], json={"devices": 8}).status_code == 403
    assert svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, json={"devices": 8}).json()["quota"]["devices"] == 8


def test_a_tenant_admin_cannot_mint_tokens_reaching_another_tenant(svc: Deploy) -> None:
    svc.call("POST", "/v1/tenants/globex/users", svc.admin, json={"name": "bob", "role": "admin"})
    r = svc.call("POST", "/v1/tenants/acme/users/bob/tokens", svc.tokens["ann"], json={})
    assert r.status_code == 403 and "every tenant" in r.json()["detail"]
    assert svc.call("POST", "/v1/tenants/acme/users/bob/tokens", svc.tokens["bob"], json={}).status_code == 201


def test_another_tenants_jobs_are_404_exactly_like_missing_ones(svc: Deploy) -> None:
    job = svc.submit("acme", svc.tokens["bob"]).json()["id"]
    gil = svc.tokens["gil"]
    for method, url in (("GET", "/v1/tenants/acme/jobs"), ("GET", f"/v1/tenants/acme/jobs/{job}"),
                        ("GET", f"/v1/tenants/acme/jobs/{job}/logs"), ("POST", f"/v1/tenants/acme/jobs/{job}/cancel"),
                        ("GET", "/v1/tenants/acme"), ("POST", "/v1/tenants/acme/jobs")):
        r = svc.call(method, url, gil, **({"json": {"command": "train"}} if url.endswith("jobs") and method == "POST" else {}))
        assert (r.status_code, r.json()) == (404, {"detail": "no tenant 'acme'" + YOURS}), (method, url)
        r2 = svc.call(method, url.replace("acme", "nosuch"), gil,
                      **({"json": {"command": "train"}} if url.endswith("jobs") and method == "POST" else {}))
        assert (r2.status_code, r2.json()) == (404, {"detail": "no tenant 'nosuch'" + YOURS})
    # acme's job id under globex: the same 404 as an id that does not exist
    assert svc.call("GET", f"/v1/tenants/globex/jobs/{job}", gil).json() == {"detail": f"no job {job} in tenant 'globex'"}
    assert svc.call("GET", "/v1/tenants/globex/jobs/999", gil).json() == {"detail": "no job 999 in tenant 'globex'"}
    assert svc.call("POST", f"/v1/tenants/globex/jobs/{job}/cancel", gil).status_code == 404
    assert [t["name"] for t in svc.call("GET", "/v1/tenants", gil).json()] == ["globex"]
    assert svc.call("GET", f"/v1/tenants/acme/jobs/{job}", svc.tokens["bob"]).json()["state"] == "queued"


def test_quota_refusals_say_why_and_change_nothing(svc: Deploy) -> None:
    bob = svc.tokens["bob"]
    r = svc.submit("acme", bob, devices=1)
    assert (r.status_code, r.json()["detail"]) == (409, "the job asks 1 device(s); tenant 'acme' may hold 0 (quota devices)")
    svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, json={"devices": 2})
    r = svc.submit("acme", bob, devices=1)
    assert (r.status_code, r.json()["detail"]) == (409, "the job asks 1 device(s); this server has 0")
    for _ in range(3):
        assert svc.submit("acme", bob).status_code == 201
    r = svc.submit("acme", bob)
    assert r.status_code == 429
    assert r.json()["detail"] == "tenant 'acme' has 3 queued job(s), its quota is 3 (quota queued_jobs): wait for some to start"
    assert svc.submit("globex", svc.tokens["gil"]).status_code == 201  # another tenant's queue is its own
    svc.call("PUT", "/v1/tenants/globex/quota", svc.admin, json={"storage_bytes": 1000})
    folder = svc.root / "tenants" / "globex" / "data"
    folder.mkdir(parents=True)
    (folder / "big.bin").write_bytes(b"x" * 1000)
    r = svc.submit("globex", svc.tokens["gil"])
    assert r.status_code == 409 and "uses 1000 bytes of storage, its quota is 1000" in r.json()["detail"]
    with svc.store.session() as s:
        assert s.scalar(text("select count(*) from jobs")) == 4


def test_fair_share_fewest_running_then_least_recent_start_then_fifo(svc: Deploy) -> None:
    svc.tenant("initech", running_jobs=5, queued_jobs=5)
    svc.user("initech", "ian", "member")
    svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, json={"running_jobs": 5, "queued_jobs": 5})
    a = [svc.submit("acme", svc.tokens["bob"]).json()["id"] for _ in range(3)]
    i = [svc.submit("initech", svc.tokens["ian"]).json()["id"] for _ in range(2)]

    def start_next() -> int | None:
        with svc.store.session() as s:
            job = quotas.pick_next(s, slots=4, free_devices=0)
            if job is None:
                return None
            job.move("starting")
            job.move("running")
            quotas.started(job.tenant, dt.datetime.now(dt.timezone.utc))
            return job.id

    # nobody runs, nobody started before: the lower tenant id (acme) first, then initech (0 running
    # against acme's 1), then both hold 1 and initech started last: acme; then the 4-slot limit
    assert [start_next() for _ in range(5)] == [a[0], i[0], a[1], i[1], None]
    with svc.store.session() as s:
        s.get(Job, a[0]).move("succeeded")
    assert start_next() == a[2]  # acme has 1 running, initech 2


def test_every_mutation_is_audited_and_the_log_is_append_only(svc: Deploy) -> None:
    bob = svc.tokens["bob"]
    job = svc.submit("acme", bob).json()["id"]
    svc.submit("acme", bob, args=["--run-dir", "../x"])
    svc.call("POST", f"/v1/tenants/acme/jobs/{job}/cancel", bob)
    svc.call("POST", "/v1/tenants", bob, json={"name": "evil"})
    rows = svc.call("GET", "/v1/audit", svc.admin).json()
    seen = [(r["actor"], r["action"], r["tenant"], r["result"].split(":")[0]) for r in reversed(rows)]
    assert seen == [
        ("server", "bootstrap", "", "ok"),
        ("admin", "tenant.create", "acme", "ok"), ("admin", "tenant.create", "globex", "ok"),
        *[x for n in ("ann", "bob", "cat", "vic") for x in (("admin", "user.add", "acme", "ok"),
                                                              ("admin", "token.create", "acme", "ok"))],
        ("admin", "user.add", "globex", "ok"), ("admin", "token.create", "globex", "ok"),
        ("bob", "job.submit", "acme", "ok"), ("bob", "job.submit", "acme", "refused 422"),
        ("bob", "job.cancel", "acme", "ok"), ("bob", "tenant.create", "evil", "refused 403"),
    ]
    assert svc.call("GET", "/v1/audit?tenant=acme", svc.tokens["ann"]).status_code == 200
    assert svc.call("GET", "/v1/audit?tenant=acme", bob).status_code == 403
    assert svc.call("GET", "/v1/audit", svc.tokens["ann"]).status_code == 403
    with pytest.raises(AppendOnlyError), svc.store.session() as s:
        s.scalars(select(AuditEntry)).first().result = "forged"
    with pytest.raises(AppendOnlyError), svc.store.session() as s:
        s.delete(s.scalars(select(AuditEntry)).first())
    for sql in ("UPDATE audit SET result = 'forged'", "DELETE FROM audit",
                *(() if svc.store.sqlite else ("TRUNCATE audit",))):
        with pytest.raises(DatabaseError, match="append-only"), svc.store.engine.begin() as conn:
            conn.execute(text(sql))
    assert len(svc.call("GET", "/v1/audit", svc.admin).json()) == len(rows) + 0


def test_openapi_schema_is_served(svc: Deploy) -> None:
    schema = svc.client.get("/openapi.json").json()
    assert {"/v1/tenants", "/v1/tenants/{tenant}/jobs", "/v1/tenants/{tenant}/jobs/{job_id}/cancel",
            "/v1/tokens/{token_id}", "/v1/audit"} <= set(schema["paths"])


def test_concurrent_submits_never_pass_the_queued_quota(svc: Deploy) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bob = svc.tokens["bob"]
    svc.call("GET", "/v1/me", bob)  # the token's hash verified once
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: svc.submit("acme", bob).status_code, range(12)))
    assert sorted(codes) == [201] * 3 + [429] * 9
    with svc.store.session() as s:
        assert s.scalar(text("select count(*) from jobs where state = 'queued'")) == 3
        assert s.scalar(text("select count(*) from audit where action = 'job.submit' and result like 'refused 429%'")) == 9


def test_logs_are_never_read_through_a_link(svc: Deploy) -> None:
    bob = svc.tokens["bob"]
    job = svc.submit("acme", bob).json()["id"]
    ws = Path(svc.call("GET", f"/v1/tenants/acme/jobs/{job}", bob).json()["workspace"])
    ws.mkdir(parents=True)
    (ws / "job.log").write_text("step 1\nstep 2\n")
    r = svc.call("GET", f"/v1/tenants/acme/jobs/{job}/logs?offset=7", bob).json()
    assert (r["text"], r["next_offset"], r["state"]) == ("step 2\n", 14, "queued")
    for far in (100, 1 << 62, 1 << 70):  # past the end, past what a file may hold, past a C offset
        r = svc.call("GET", f"/v1/tenants/acme/jobs/{job}/logs?offset={far}", bob)
        assert (r.status_code, r.json()["text"], r.json()["next_offset"]) == (200, "", far), r.text
    (ws / "job.log").unlink()
    os.symlink("/etc/passwd", ws / "job.log")
    r = svc.call("GET", f"/v1/tenants/acme/jobs/{job}/logs", bob)
    assert (r.status_code, r.json()["detail"]) == (409, f"job {job}: its job.log is not a regular file")


def test_a_taken_tenant_name_and_a_missing_tenant_say_what_to_do(svc: Deploy) -> None:
    """``tenants create`` on a name in use and ``tenants add-user`` (or any request) on a tenant that
    does not exist: the refusal names the command that fixes it (its creation for a platform admin,
    who is in every tenant; the list of the caller's tenants for anyone else)."""
    r = svc.call("POST", "/v1/tenants", svc.admin, json={"name": "acme"})
    assert (r.status_code, r.json()) == (409, {"detail": "tenant 'acme' exists; choose another name or see "
                                                         "'deepseek tenants list'"})
    r = svc.call("POST", "/v1/tenants/acmee/users", svc.admin, json={"name": "eve", "role": "member"})
    assert (r.status_code, r.json()) == (404, {"detail": "no tenant 'acmee'; create it with "
                                                         "'deepseek tenants create acmee'"})
    r = svc.call("PUT", "/v1/tenants/acmee/quota", svc.admin, json={"devices": 8})  # set up as a new tenant is
    assert (r.status_code, r.json()) == (404, {"detail": "no tenant 'acmee'; create it with "
                                                         "'deepseek tenants create acmee'"})
    # a route reading what a tenant holds (jobs, their files, users, tokens, audit): a new tenant holds
    # none of it, so the name is mistyped; these said to create it too (auth.tenant_row's one line)
    for method, url in (("GET", "/v1/tenants/acmee/jobs"), ("GET", "/v1/tenants/acmee/jobs/1"),
                        ("GET", "/v1/tenants/acmee/jobs/1/logs"), ("POST", "/v1/tenants/acmee/jobs/1/cancel"),
                        ("POST", "/v1/tenants/acmee/jobs"), ("GET", "/v1/tenants/acmee/jobs/1/files"),
                        ("GET", "/v1/tenants/acmee/jobs/1/download?path=job.log"),
                        ("GET", "/v1/tenants/acmee/jobs/1/metrics"), ("GET", "/v1/tenants/acmee"),
                        ("GET", "/v1/tenants/acmee/users"), ("DELETE", "/v1/tenants/acmee/users/bob"),
                        ("POST", "/v1/tenants/acmee/users/bob/tokens"), ("GET", "/v1/audit?tenant=acmee")):
        body = {"json": {"command": "train"}} if url.endswith("jobs") and method == "POST" else (
            {"json": {}} if url.endswith("tokens") else {})
        r = svc.call(method, url, svc.admin, **body)
        assert (r.status_code, r.json()) == (404, {"detail": "no tenant 'acmee'; see 'deepseek tenants list' for the "
                                                             "tenants there are"}), (method, url)
    r = svc.call("GET", "/v1/tenants/Acme", svc.admin)  # a name no tenant can have: not one to create
    assert r.status_code == 404 and r.json()["detail"].startswith("no tenant 'Acme'; 'Acme' is not a tenant or user name")
    # a tenant admin (ann, of acme) mistyping its tenant: where to find its tenants, the same line as for
    # a tenant that exists but is not the caller's (gil's globex), so it confirms no tenant's existence
    for who, tenant in (("ann", "acmee"), ("ann", "globex")):
        r = svc.call("POST", f"/v1/tenants/{tenant}/users", svc.tokens[who], json={"name": "eve"})
        assert (r.status_code, r.json()) == (404, {"detail": f"no tenant '{tenant}'" + YOURS})
