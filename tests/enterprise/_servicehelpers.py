"""The job service's test tools: a server (store, scheduler, API) on a temporary folder, driven
through FastAPI's TestClient, and the tenants/users/tokens the tests act as."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

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


def deploy(root: Path, *, run: bool = False, slots: int = 2, grace_s: float = 30.0, db_url: str | None = None) -> Deploy:
    """A server on ``root`` (SQLite in it unless ``db_url``); ``run``: with its scheduler loop running jobs."""
    root.mkdir(parents=True, exist_ok=True)
    store = Store(db_url or f"sqlite:///{root}/service.db")
    token = store.bootstrap() or ""
    scheduler = None
    if run:
        scheduler = Scheduler(store, LocalExecutor(root, grace_s=grace_s), slots=slots, gpus=[], interval=0.2)
        scheduler.start()
    client = TestClient(create_app(Service(store, root, scheduler=scheduler, pool_size=0)))
    return Deploy(root, store, client, token, scheduler)
