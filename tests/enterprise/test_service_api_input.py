"""The job service's HTTP API refusing bad input (FastAPI's TestClient, no jobs run): paths
outside the tenant's folder, malformed requests, NUL characters, numbers out of range or not JSON
numbers; each one line with its status, and nothing written."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import _apiservice
import pytest
from _servicehelpers import BACKENDS, Deploy
from sqlalchemy import select, text

from deepseek_enterprise.service.models import Tenant
from deepseek_enterprise.service.store import Store


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Deploy:
    return _apiservice.sqlite_template(tmp_path_factory)


@pytest.fixture(scope="module")
def postgresql_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Deploy]]:
    yield from _apiservice.postgresql_template(tmp_path_factory)


@pytest.fixture(params=BACKENDS)
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deploy]:
    yield from _apiservice.copy_of_template(request, tmp_path)


LONG = "n" * 300
"""A name longer than the 255 bytes a file system takes."""


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
    ({"files": {"x.toml\n": ""}}, "files: 'x.toml\\n' is not allowed: use a plain file name"),  # was written so
    ({"files": {"tmp": ""}}, "not config.toml, job.log, exit_code or tmp"),  # the job's tmp/ folder: its start failed
    ({"files": {"space.toml": "[space]\n\"data.path\" = \"/root\"\n"}}, "files space.toml"),
    # a config under any name (`train cfg.txt` reads it): its runs_dir wrote outside the tenant
    ({"args": ["cfg.txt"], "files": {"cfg.txt": "[logging]\nruns_dir = \"/tmp/escaped\"\n"}}, "files cfg.txt"),
    ({"args": ["cfg"], "files": {"cfg": "\ufeff[logging]\nruns_dir = \"/tmp/escaped\"\n"}}, "files cfg"),
    ({"files": {"ds.json": '{"tensorboard": {"output_path": "/tmp/escaped"}}'}}, "files ds.json"),
    # a name over 255 bytes, which the job could neither make nor read: accepted, the job failed when it ran
    ({"config": f"[data]\npath = \"data/{LONG}\"\n"}, f"config data.path: data/{LONG[:50]}"),
    ({"args": ["--set", f"data.path=\"data/{LONG}/x.txt\""]}, "--set data.path: data/"),
    ({"files": {"space.toml": f"[space]\n\"data.path\" = \"{LONG}/\"\n"}}, "files space.toml space.data.path"),
])
def test_paths_outside_the_tenant_folder_are_refused(svc: Deploy, job: dict, words: str) -> None:
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert r.status_code == 422 and words in r.json()["detail"], r.text
    if LONG in str(job):  # the wording of a path option's name too long (deepseek.paths.name_too_long)
        assert "cannot be used (File name too long: 'nnn" in r.json()["detail"], r.text
        assert "is 300 bytes, a name may have 255); give another path" in r.json()["detail"], r.text
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


def test_a_json_column_nested_past_the_stack_is_refused_by_its_row(svc: Deploy) -> None:
    """A job's args nested 5,000 levels deep (a hand-edited database): Python's JSON parser
    recursed past the stack, an internal error when a server opened the database."""
    from deepseek.errors import UsageError

    r = svc.submit("globex", svc.tokens["gil"])
    assert r.status_code == 201, r.text
    with svc.store.engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET args = :deep"), {"deep": "[" * 5000 + "]" * 5000})
    with pytest.raises(UsageError, match=r"^--db .*: table jobs, row with id \d+: column args holds .*, not JSON; "
                       r"the database was edited or is damaged"):
        Store(svc.store.url)


def test_a_token_lifetime_under_an_hour_is_refused_and_one_of_an_hour_taken(svc: Deploy) -> None:
    """``expires_in_days = 1e-9`` (86 microseconds) made a token that had expired before its first
    use; now anything under one hour is 422 in one line, no token is made, and one hour is taken."""
    from deepseek_enterprise.service.models import Token

    with svc.store.session() as s:
        before = s.scalar(text("select count(*) from tokens"))
    url = "/v1/tenants/acme/users/bob/tokens"
    for days in (1e-9, 0.04, 0, -1):
        r = svc.call("POST", url, svc.admin, json={"expires_in_days": days})
        assert (r.status_code, r.json()["detail"]) == (422, (
            f"invalid request: expires_in_days: Value error, {days:g} days is less than the shortest lifetime a "
            "token may have, one hour (0.04167 days); give a longer one, or null for a token that never expires"))
    with svc.store.session() as s:
        assert s.scalar(text("select count(*) from tokens")) == before
    asked = dt.datetime.now(dt.timezone.utc)
    r = svc.call("POST", url, svc.admin, json={"expires_in_days": 1 / 24})
    answered = dt.datetime.now(dt.timezone.utc)
    assert r.status_code == 201, r.text
    hour = dt.timedelta(hours=1)
    assert asked + hour <= dt.datetime.fromisoformat(r.json()["expires_at"]) <= answered + hour, r.text
    assert svc.call("GET", "/v1/me", r.json()["token"]).status_code == 200  # usable at once
    with svc.store.session() as s:
        assert s.scalar(select(Token).where(Token.token_id == r.json()["token_id"])) is not None


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


def test_a_whole_token_given_as_a_token_id_is_refused_and_its_secret_kept_out_of_the_audit(svc: Deploy) -> None:
    """DELETE /v1/tokens/ID with a whole token (``dsk_<id>.<secret>``, what a user pastes to revoke
    it) or any other text was audited as 'token <that text>', secret and all, and answered 404
    "no token '<that text>'". A value that is no id is now 422 before the audit; the id revokes."""
    bob = svc.tokens["bob"]
    before = svc.call("GET", "/v1/audit", svc.admin).json()
    for value, words in [(bob, f"give its id only: {bob[4:16]}, the 12 hex digits after dsk_"),
                         ("zzz", "'zzz' is not a token id")]:
        r = svc.call("DELETE", f"/v1/tokens/{value}", svc.admin)
        assert r.status_code == 422 and r.json()["detail"].startswith("token id: ") and words in r.json()["detail"]
        assert bob[17:] not in r.text
    assert svc.call("GET", "/v1/audit", svc.admin).json() == before
    assert svc.call("DELETE", f"/v1/tokens/{bob[4:16]}", svc.admin).status_code == 200
