"""The job service's HTTP API through FastAPI's TestClient (no jobs run here; the scheduler is
off, so submitted jobs stay queued): tokens, roles, tenant isolation, quotas, fair share, the
audit log and bad input."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _servicehelpers import BACKENDS, Deploy, copy_postgres_rows, database, deploy
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from deepseek_enterprise.service import quotas, tokens
from deepseek_enterprise.service.models import AuditEntry, Job, Tenant, Token
from deepseek_enterprise.service.store import AppendOnlyError, Store


def _populated(d: Deploy) -> Deploy:
    """``d`` with the tenants, users and tokens every test here starts from."""
    d.tenant("acme", running_jobs=1, queued_jobs=3, devices=0)
    d.tenant("globex", running_jobs=1, queued_jobs=3)
    for name, role in (("ann", "admin"), ("bob", "member"), ("cat", "member"), ("vic", "viewer")):
        d.user("acme", name, role)
    d.user("globex", "gil", "admin")
    return d


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Deploy:
    """A populated SQLite server's folder, closed, made once: each test opens a copy of it (its
    twelve set-up requests, each hashing or verifying a token with scrypt, cost seconds a test)."""
    d = _populated(deploy(tmp_path_factory.mktemp("template") / "srv"))
    d.close()
    return d


@pytest.fixture(scope="module")
def postgresql_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Deploy]]:
    """The same for PostgreSQL: a populated server's schema (its URL) and the closed server, kept
    for the module; each test copies its rows into a schema of its own."""
    with database("postgresql", tmp_path_factory.mktemp("template") / "srv") as url:
        d = _populated(deploy(tmp_path_factory.mktemp("template") / "srv", db_url=url))
        d.close()
        yield url, d


@pytest.fixture(params=BACKENDS)
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deploy]:
    template: Deploy
    if request.param == "sqlite":  # a copy of the template: the same database a new server's set-up writes
        template = request.getfixturevalue("sqlite_template")
        shutil.copytree(template.root, tmp_path / "srv")
        d = deploy(tmp_path / "srv")
        d.admin, d.tokens = template.admin, dict(template.tokens)
        yield d
        d.close()
        return
    with database(request.param, tmp_path / "srv") as url:  # skips without PostgreSQL
        source, template = request.getfixturevalue("postgresql_template")
        Store(url).engine.dispose()  # the tables and triggers, empty
        copy_postgres_rows(source, url)
        d = deploy(tmp_path / "srv", db_url=url)
        d.admin, d.tokens = template.admin, dict(template.tokens)
        yield d
        d.close()


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
        assert (r.status_code, r.json()) == (404, {"detail": "no tenant 'acme'"}), (method, url)
        r2 = svc.call(method, url.replace("acme", "nosuch"), gil,
                      **({"json": {"command": "train"}} if url.endswith("jobs") and method == "POST" else {}))
        assert (r2.status_code, r2.json()) == (404, {"detail": "no tenant 'nosuch'"})
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


@pytest.mark.parametrize(("job", "words"), [
    ({"args": ["--run-dir", "../other"]}, "'..' is not allowed"),
    ({"args": ["--run-dir=/tmp/elsewhere"]}, "is outside the tenant's folder"),
    ({"args": ["--set", "train.init_from=\"/etc/passwd\""]}, "--set train.init_from"),
    ({"args": ["--set", "data.path=~/x"]}, "'~' is not allowed"),
    ({"config": "[data]\npath = \"/etc\"\n"}, "config data.path"),
    ({"config": "[train]\ninit_from = \"runs/../../../x\"\n"}, "'..' is not allowed"),
    ({"config": "[trackers.mlflow]\ntracking_uri = \"file:///etc\"\n"}, "URLs are not allowed"),
    ({"config": "[train\n"}, "not valid TOML"),
    ({"args": ["--storage", "journal:/tmp/study.log"]}, "is outside the tenant's folder"),
    ({"args": ["-o/etc/out"]}, "is outside the tenant's folder"),
    ({"args": ["out=../x"]}, "'..' is not allowed"),
    ({"args": ["--set", "data={path=\"/srv/other\"}"]}, "--set data"),
    ({"files": {"torch.py": "print(1)"}}, "plain file name"),
    ({"files": {"../x.toml": ""}}, "plain file name"),
    ({"files": {"tmp": ""}}, "not config.toml, job.log, exit_code or tmp"),  # the job's tmp/ folder: its start failed
    ({"files": {"space.toml": "[space]\n\"data.path\" = \"/root\"\n"}}, "files space.toml"),
    # a config under any name (`train cfg.txt` reads it): its runs_dir wrote outside the tenant
    ({"args": ["cfg.txt"], "files": {"cfg.txt": "[logging]\nruns_dir = \"/tmp/escaped\"\n"}}, "files cfg.txt"),
    ({"args": ["cfg"], "files": {"cfg": "\ufeff[logging]\nruns_dir = \"/tmp/escaped\"\n"}}, "files cfg"),
    ({"files": {"ds.json": '{"tensorboard": {"output_path": "/tmp/escaped"}}'}}, "files ds.json"),
])
def test_paths_outside_the_tenant_folder_are_refused(svc: Deploy, job: dict, words: str) -> None:
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert r.status_code == 422 and words in r.json()["detail"], r.text
    assert "\n" not in r.json()["detail"]
    with svc.store.session() as s:
        assert s.scalar(text("select count(*) from jobs")) == 0


def test_inside_paths_are_accepted_and_symlinks_refused(svc: Deploy) -> None:
    bob = svc.tokens["bob"]
    tenant = svc.root / "tenants" / "acme"
    (tenant / "data").mkdir(parents=True)
    assert svc.submit("acme", bob, args=["--run-dir", "runs/a", "--set", f"data.path=\"{tenant}/data\""]).status_code == 201
    os.symlink("/etc", tenant / "data" / "etc")
    r = svc.submit("acme", bob, args=["--set", f"data.path=\"{tenant}/data/etc/x\""])
    assert r.status_code == 422 and "is a symbolic link" in r.json()["detail"]


def test_bad_requests_get_one_line_and_the_right_status(svc: Deploy) -> None:
    bob = svc.tokens["bob"]
    cases = [
        (svc.call("POST", "/v1/tenants/acme/jobs", bob, json={"command": "train", "cmd": "x"}), 422, "cmd: Extra inputs"),
        (svc.call("POST", "/v1/tenants/acme/jobs", bob, json={"command": "run"}), 422, "command"),
        (svc.call("POST", "/v1/tenants/acme/jobs", bob, content=b"{not json", headers={"content-type": "application/json"}), 422, "invalid request"),
        (svc.call("POST", "/v1/tenants/acme/jobs", bob, json={"command": "train", "args": ["x" * 5000]}), 422, "args.0"),
        # nested past the parser's recursion: FastAPI's own answer for a body it cannot parse
        (svc.call("POST", "/v1/tenants/acme/jobs", bob, content=b'{"command": "train", "args": ' + b"[" * 5000
                  + b"]" * 5000 + b"}", headers={"content-type": "application/json"}), 400, "error parsing the body"),
        # a config file nested past tomllib's recursion: was a 500
        (svc.call("POST", "/v1/tenants/acme/jobs", bob, json={"command": "train", "args": ["c.toml"], "files": {
            "c.toml": "[train]\nx = " + "[" * 5000 + "]" * 5000}}), 422, "nested deeper than 64 levels"),
        (svc.call("POST", "/v1/tenants/acme/jobs", bob, content=b"x" * (5 << 20)), 413, "request body over"),
        (svc.call("POST", "/v1/tenants", svc.admin, json={"name": "Bad/Name"}), 422, "name"),
        (svc.call("GET", "/v1/tenants/acme/jobs/abc", bob), 422, "job_id"),
        (svc.call("GET", "/v1/tenants/acme/jobs?state=nope", bob), 422, "state"),
    ]
    for r, status, words in cases:
        detail = r.json()["detail"]
        assert r.status_code == status and words in detail and "\n" not in detail and "Traceback" not in r.text, r.text
    with svc.store.session() as s:
        assert s.scalar(text("select count(*) from jobs")) == 0
        assert s.scalar(select(Tenant).where(Tenant.name == "Bad/Name")) is None


def test_a_nul_in_a_urls_name_or_a_token_name_is_422_on_every_database(svc: Deploy) -> None:
    """PostgreSQL refuses a NUL character in any text value, a query's too: a tenant, user or token
    id holding one in the URL (``%00``), the audit's ``tenant``, a token's name, or a job's config
    text, was a 500 (psycopg DataError) on PostgreSQL, looking the name up, writing the job's row
    or auditing the request. The path is refused before any query
    (one line, 422), a token name takes no control character; nothing is written."""
    before = svc.call("GET", "/v1/audit", svc.admin).json()
    nul = ("invalid request: the URL's path holds a NUL character (%00); no tenant, user, job or token name does")
    cases = [
        (svc.submit("ac%00me", svc.tokens["bob"]), nul),
        (svc.call("PUT", "/v1/tenants/ac%00me/quota", svc.admin, json={}), nul),
        (svc.call("POST", "/v1/tenants/acme/users/bo%00b/tokens", svc.admin, json={}), nul),
        (svc.call("DELETE", "/v1/tokens/0123456789%00", svc.admin), nul),
        (svc.call("POST", "/v1/tenants/acme/users/bob/tokens", svc.admin, json={"name": "ci\x00"}), "name"),
        (svc.call("POST", "/v1/tenants/acme/users/bob/tokens", svc.admin, json={"name": "ci\n"}), "name"),
        (svc.call("GET", "/v1/audit?tenant=ac%00me", svc.admin), "tenant"),
        # a config holding one: the job's row was written before the refusal
        (svc.submit("acme", svc.tokens["bob"], config="# \x00\n"), "config: Value error, a NUL character is not allowed"),
    ]
    for r, words in cases:
        detail = r.json()["detail"]
        assert r.status_code == 422 and words in detail and "\n" not in detail, r.text
    assert svc.call("GET", "/v1/audit", svc.admin).json() == before
    r = svc.call("POST", "/v1/tenants/acme/users/bob/tokens", svc.admin, json={"name": "ci bot: é"})
    assert r.status_code == 201, r.text


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


def test_out_of_range_quotas_and_token_lifetimes_are_422_and_change_nothing(svc: Deploy) -> None:
    """A quota beyond a database integer was a 500 on writing it; infinity and NaN (Python's JSON
    reads them) were taken as numbers."""
    json_type = {"content-type": "application/json"}
    before = svc.call("GET", "/v1/tenants/acme/quota", svc.admin).json()
    cases = [
        (svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, json={"storage_bytes": 10**23}), "storage_bytes"),
        (svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, json={"memory_bytes": 1 << 63}), "memory_bytes"),
        (svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, json={"cpu_seconds": 1 << 64}), "cpu_seconds"),
        (svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, content=b'{"device_hours": Infinity}',
                  headers=json_type), "device_hours"),
        (svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, content=b'{"cpus": NaN}', headers=json_type), "cpus"),
        (svc.call("POST", "/v1/tenants/acme/users/bob/tokens", svc.admin, content=b'{"expires_in_days": NaN}',
                  headers=json_type), "expires_in_days"),
    ]
    for r, words in cases:
        detail = r.json()["detail"]
        assert r.status_code == 422 and words in detail and "\n" not in detail, r.text
    assert svc.call("GET", "/v1/tenants/acme/quota", svc.admin).json() == before


@pytest.mark.parametrize("args", [["tenants", "quota", "acme", "--cpus", "nan"],
                                  ["tenants", "quota", "acme", "--gpu-memory-fraction", "inf"],
                                  ["tenants", "quota", "acme", "--device-hours", "-inf"],
                                  ["tenants", "token", "acme", "bob", "--expires-days", "nan"]])
def test_the_client_refuses_non_finite_numbers_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         args: list[str]) -> None:
    """They were an internal error (exit 1) encoding the request; refused before any request now."""
    from _inprocess import deepseek_here

    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # nothing is asked of a server
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    code, err, out = deepseek_here(monkeypatch, tmp_path, *args)
    assert code == 2 and len(err.splitlines()) == 1 and "is not a finite number" in err, err
    assert out == ""


def test_submit_refuses_two_files_of_one_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both landed under one name in the workspace: one was silently lost."""
    from _inprocess import deepseek_here

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "words.txt").write_text(folder)
    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # refused before any request
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    code, err, out = deepseek_here(monkeypatch, tmp_path, "jobs", "submit", "--file", "a/words.txt", "--file",
                                   "b/words.txt", "train")
    assert (code, out, err) == (2, "", "error: --file: words.txt given twice (files land in the workspace under "
                                       "their names); give each name once")


@pytest.mark.parametrize("kind", ["fifo", "device", "big"])
def test_submit_refuses_a_file_it_cannot_send_before_reading_it_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      kind: str) -> None:
    """--file or --config was read whole: a FIFO blocked the command for ever, a device (/dev/zero)
    filled its memory until it was killed; a file past the server's limit was read and sent to be
    refused. Now one line before reading more than the limit, and before any request."""
    import contextlib
    import threading

    from _inprocess import deepseek_here

    from deepseek_enterprise.service.jobpaths import MAX_FILE_BYTES

    path = {"fifo": tmp_path / "pipe", "device": Path("/dev/null"), "big": tmp_path / "big.txt"}[kind]
    done = threading.Event()
    if kind == "fifo":
        os.mkfifo(path)

        def unblock() -> None:  # a build that waits in the FIFO's open gets an end of file: it fails, not hangs
            while not done.wait(0.5):
                with contextlib.suppress(OSError):  # ENXIO: nothing has it open for reading
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

        threading.Thread(target=unblock, daemon=True).start()
    elif kind == "big":
        path.write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # refused before any request
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    option = "--config" if kind == "device" else "--file"
    try:
        code, err, out = deepseek_here(monkeypatch, tmp_path, "jobs", "submit", option, str(path), "train")
    finally:
        done.set()
    why = (f"larger than {MAX_FILE_BYTES} bytes, the most the server takes for a job's file; put the data in the "
           "tenant's folder and name it by its path") if kind == "big" else "not a regular file; give a text file"
    assert (code, out, err) == (2, "", f"error: {option} {path}: {why}")


def test_a_running_jobs_quota_of_zero_is_refused_on_create_update_and_read_back(svc: Deploy) -> None:
    """Accepted: every job of the tenant then waited in the queue for ever (docs/service.md documents
    no pause); a database holding it (by hand, or from an older build) is refused when opened."""
    from deepseek.errors import UsageError

    r = svc.call("POST", "/v1/tenants", svc.admin, json={"name": "initech", "quota": {"running_jobs": 0}})
    assert r.status_code == 422 and "running_jobs" in r.json()["detail"] and "\n" not in r.json()["detail"], r.text
    assert svc.call("GET", "/v1/tenants/initech", svc.admin).status_code == 404
    before = svc.call("GET", "/v1/tenants/acme/quota", svc.admin).json()
    r = svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, json={"running_jobs": 0})
    assert r.status_code == 422 and "running_jobs" in r.json()["detail"], r.text
    assert svc.call("GET", "/v1/tenants/acme/quota", svc.admin).json() == before
    assert svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, json={"running_jobs": 1}).status_code == 200
    with svc.store.session() as s:  # what a hand-edited database holds
        s.scalar(select(Tenant).where(Tenant.name == "globex")).quota.running_jobs = 0
    # read back like user input (service/rowcheck.py, the API's own QuotaIn rule)
    with pytest.raises(UsageError, match=r"^--db .*: table quotas, row with tenant_id \d+: column running_jobs holds 0: "
                       r"Input should be greater than or equal to 1; the database was edited or is damaged"):
        Store(svc.store.url)


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/tenants/acme/quota", {"devices": True}),  # was taken as 1
    ("/v1/tenants/acme/quota", {"running_jobs": "2"}),  # was taken as 2
    ("/v1/tenants/acme/quota", {"queued_jobs": 3.0}),
    ("/v1/tenants/acme/quota", {"device_hours": False}),
    ("/v1/tenants/acme/jobs", {"command": "train", "devices": True}),
    ("/v1/tenants", {"name": "initech", "quota": {"period_days": "30"}}),
])
def test_a_number_field_takes_json_numbers_only(svc: Deploy, path: str, body: dict) -> None:
    """JSON true or "2" for a number was coerced (true became 1 device); now 422 naming the field,
    and nothing changes."""
    before = svc.call("GET", "/v1/tenants/acme/quota", svc.admin).json()
    jobs = svc.call("GET", "/v1/tenants/acme/jobs", svc.admin).json()
    method = "PUT" if path.endswith("/quota") else "POST"
    r = svc.call(method, path, svc.admin, json=body)
    field = next(iter(body["quota"])) if "quota" in body else next(k for k in body if k != "command")
    assert r.status_code == 422 and field in r.json()["detail"] and "\n" not in r.json()["detail"], r.text
    assert svc.call("GET", "/v1/tenants/acme/quota", svc.admin).json() == before
    assert svc.call("GET", "/v1/tenants/acme/jobs", svc.admin).json() == jobs
    assert svc.call("GET", "/v1/tenants/initech", svc.admin).status_code == 404
    # the same fields as JSON numbers are taken (a whole number for a float field too)
    if path.endswith("/quota"):
        assert svc.call("PUT", path, svc.admin, json={"devices": 2, "device_hours": 5}).status_code == 200
