"""The job service's test tools: a server (store, scheduler, API) on a temporary folder, driven
through FastAPI's TestClient, and the tenants/users/tokens the tests act as."""

from __future__ import annotations

import contextlib
import io
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _exitstatus import exit_status
from fastapi.testclient import TestClient

from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek_enterprise.service.api import Service, create_app
from deepseek_enterprise.service.executor import LocalExecutor
from deepseek_enterprise.service.scheduler import Scheduler
from deepseek_enterprise.service.store import Store

TINY_TRAIN = [
    "--set", "model.name=tiny", "--set", "model.d_model=32", "--set", "model.n_heads=2",
    "--set", "model.n_layers=1", "--set", "model.max_seq_len=32", "--set", "data.seq_len=16",
    "--set", "data.batch_size=2", "--set", "data.eval_batches=1", "--max-steps", "2",
    "--set", "logging.plot=false", "--set", "strategy.device=\"cpu\"", "--precision", "fp32", "--quiet",
]
"""``deepseek train`` arguments of a two-step run of a very small GPT on the CPU."""

CLI_HOST = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"})))
"""The plugin host the client commands run on in the tests (the editions only)."""


def run_cli(*argv: str, token: str | None, url: str) -> tuple[int, str, str]:
    """``deepseek ARGV`` in this process against the server at ``url`` with ``token``:
    ``(exit code, stdout, stderr)``."""
    from deepseek.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    env = {"DEEPSEEK_TOKEN": token or "", "DEEPSEEK_SERVER": url}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(argv), host=CLI_HOST)
            except SystemExit as exc:
                code = exit_status(exc.code, err)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


@dataclass
class Deploy:
    """One server on ``root``: ``client`` speaks to its API; ``admin`` is the bootstrap token."""

    root: Path
    store: Store
    client: TestClient
    admin: str
    scheduler: Scheduler | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, url: str, token: str | None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.request(method, url, headers={**headers, **kw.pop("headers", {})}, **kw)

    def tenant(self, name: str, **quota: Any) -> None:
        r = self.call("POST", "/v1/tenants", self.admin, json={"name": name, "quota": quota})
        assert r.status_code == 201, r.text

    def user(self, tenant: str, name: str, role: str) -> str:
        r = self.call("POST", f"/v1/tenants/{tenant}/users", self.admin, json={"name": name, "role": role})
        assert r.status_code == 201, r.text
        r = self.call("POST", f"/v1/tenants/{tenant}/users/{name}/tokens", self.admin, json={})
        assert r.status_code == 201, r.text
        self.tokens[name] = r.json()["token"]
        return r.json()["token"]

    def submit(self, tenant: str, token: str, **job: Any) -> Any:
        return self.call("POST", f"/v1/tenants/{tenant}/jobs", token, json={"command": "train", **job})

    def wait(self, tenant: str, token: str, job_id: int, states: set[str], timeout: float = 120) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            job = self.call("GET", f"/v1/tenants/{tenant}/jobs/{job_id}", token).json()
            if job["state"] in states or time.monotonic() > end:
                return job
            time.sleep(0.2)

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        self.client.close()
        self.store.engine.dispose()


BACKENDS = ("sqlite", "postgresql")
"""The databases the service's tests run on (``postgresql``: where DEEPSEEK_TEST_POSTGRES_URL is set)."""


@contextlib.contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """A clean database URL of ``kind``: SQLite in ``folder``, or a new PostgreSQL schema in the
    database of ``DEEPSEEK_TEST_POSTGRES_URL`` (.ci/services/postgres.sh), dropped afterwards.
    Skips the test when that variable is unset."""
    if kind == "sqlite":
        folder.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{folder}/service.db"
        return
    base = os.environ.get("DEEPSEEK_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("PostgreSQL not available: DEEPSEEK_TEST_POSTGRES_URL is unset (.ci/services/postgres.sh sets it)")
    from sqlalchemy import create_engine, make_url, text

    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text("SET lock_timeout = '20s'"))
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def copy_postgres_rows(source: str, target: str) -> None:
    """Every row of the service's tables in the PostgreSQL schema of :func:`database` URL ``source``
    into that of ``target`` (whose tables are empty; a :class:`Store` opened on it made them), ids
    included, each table's id sequence then set past its rows: ``target`` holds the same database,
    without the set-up requests (each hashing or verifying a token with scrypt) that made ``source``."""
    from sqlalchemy import create_engine, make_url, text

    from deepseek_enterprise.service.models import Base

    def schema(url: str) -> str:
        return make_url(url).query["options"].removeprefix("-csearch_path=")

    src, dst = schema(source), schema(target)
    engine = create_engine(os.environ["DEEPSEEK_TEST_POSTGRES_URL"])
    try:
        with engine.begin() as conn:
            for table in Base.metadata.sorted_tables:
                conn.execute(text(f"INSERT INTO {dst}.{table.name} SELECT * FROM {src}.{table.name}"))
                if "id" in table.c and table.c.id.primary_key:
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{dst}.{table.name}', 'id'), "
                                      f"coalesce(max(id), 1), max(id) IS NOT NULL) FROM {dst}.{table.name}"))
    finally:
        engine.dispose()


def deploy(root: Path, *, run: bool = False, slots: int = 2, grace_s: float = 30.0, db_url: str | None = None,
           host: PluginHost = CLI_HOST, study_check: bool = True) -> Deploy:
    """A server on ``root`` (SQLite in it unless ``db_url``); ``run``: with its scheduler loop running jobs;
    ``host``: the plugin host whose commands check a job at submit; ``study_check``: the server's
    setting (``Service.study_check``, ``deepseek server --no-study-check``): False where a test is not
    about a ``tune`` job's study check, which starts a child importing torch per ``tune`` submit."""
    root.mkdir(parents=True, exist_ok=True)
    store = Store(db_url or f"sqlite:///{root}/service.db")
    token = store.bootstrap() or ""
    scheduler = None
    if run:
        scheduler = Scheduler(store, LocalExecutor(root, grace_s=grace_s), slots=slots, gpus=[], interval=0.2)
        scheduler.start()
    client = TestClient(create_app(Service(store, root, scheduler=scheduler, pool_size=0, host=host,
                                                study_check=study_check)))
    return Deploy(root, store, client, token, scheduler)


def two_tenants(root: Path, host: PluginHost = CLI_HOST, *, study_check: bool = True, **acme_quota: Any) -> Deploy:
    """A server with tenants ``acme`` (member ``bob``, viewer ``vic``; ``acme_quota``: its quota's
    fields other than the defaults) and ``globex`` (member ``gil``); ``study_check`` as :func:`deploy`'s."""
    d = deploy(root, host=host, study_check=study_check)
    d.tenant("acme", **acme_quota)
    d.tenant("globex")
    d.user("acme", "bob", "member")
    d.user("acme", "vic", "viewer")
    d.user("globex", "gil", "member")
    return d


def submit_checks(factory: pytest.TempPathFactory, *, study_check: bool = True) -> Iterator[Deploy]:
    """:func:`two_tenants` shared by a module's submit-check tests (a module-scoped fixture yields
    from it): its set-up's eight requests, each hashing or verifying a token with scrypt, cost about
    a second a test otherwise. No scheduler runs, so each job accepted stays queued: acme's
    ``queued_jobs`` quota is raised above what a module submits. A test that reads the database
    compares it with what it held before the test's own submits; ``study_check`` as :func:`deploy`'s."""
    d = two_tenants(factory.mktemp("srv"), queued_jobs=100_000, study_check=study_check)
    yield d
    d.close()


def one_line_error(result: tuple[int, str, str], words: str) -> None:
    """``result`` (a command's exit code, stdout, stderr) is a one-line error holding ``words``, exit code 2."""
    code, _out, err = result
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ") and words in err, result


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``deepseek server`` for real: its own process, uvicorn on a free port, ``--devices none``,
    the database ``db_url`` (passed as DEEPSEEK_DB_URL) or SQLite in ``root``; ``token`` is the
    bootstrap admin's on a new database; ``env``: variables added to the server's environment."""

    def __init__(self, root: Path, *args: str, db_url: str | None = None, new: bool = True,
                 env: dict[str, str] | None = None) -> None:
        import subprocess
        import sys

        import httpx

        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_TOKEN", "DEEPSEEK_DB_URL")}
        full |= {"PYTHONUNBUFFERED": "1", **({"DEEPSEEK_DB_URL": db_url} if db_url else {}), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deepseek", "server", "--port", str(self.port), "--root", str(root),
             "--devices", "none", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full)
        self.token = ""
        if new:
            line = self.proc.stdout.readline()
            assert line.startswith("new database"), line + self.proc.stderr.read()
            self.token = self.proc.stdout.readline().strip()
        self.http = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.http.get("/openapi.json", timeout=1)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(self.proc.stderr.read()) from None
                time.sleep(0.2)

    def call(self, method: str, path: str, token: str, **kw: Any) -> Any:
        return self.http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)

    def setup(self, tenants: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Each tenant with its quota and one member named after it; their tokens by tenant."""
        out = {}
        for name, quota in tenants.items():
            assert self.call("POST", "/v1/tenants", self.token, json={"name": name, "quota": quota}).status_code == 201
            user = f"{name}-user"
            assert self.call("POST", f"/v1/tenants/{name}/users", self.token, json={"name": user}).status_code == 201
            r = self.call("POST", f"/v1/tenants/{name}/users/{user}/tokens", self.token, json={})
            out[name] = r.json()["token"]
        return out

    def kill(self) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.http.close()
