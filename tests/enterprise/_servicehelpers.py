"""The job service's test tools: a server (store, scheduler, API) on a temporary folder, driven
through FastAPI's TestClient, and the tenants/users/tokens the tests act as."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def deploy(root: Path, *, run: bool = False, slots: int = 2, grace_s: float = 30.0) -> Deploy:
    """A server on ``root`` (SQLite); ``run``: with its scheduler loop running jobs."""
    root.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{root}/service.db")
    token = store.bootstrap() or ""
    scheduler = None
    if run:
        scheduler = Scheduler(store, LocalExecutor(root, grace_s=grace_s), slots=slots, gpus=[], interval=0.2)
        scheduler.start()
    client = TestClient(create_app(Service(store, root, scheduler=scheduler, pool_size=0)))
    return Deploy(root, store, client, token, scheduler)
