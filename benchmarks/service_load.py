"""Issue 17's load figure: submit latency of the job server under a burst of concurrent submits.

    python benchmarks/service_load.py [--db URL] [--submits 200] [--tenants 4] [--threads 16]

1. ``deepseek server --slots SLOTS --devices none`` on a fresh root (SQLite in it, or ``--db``:
   use an empty database or schema), tenants ``t0..`` with ``--queued`` queued and ``--running``
   running jobs each, a member token per tenant (each verified once before the burst: the token
   hash is deliberately slow and cached afterwards).
2. ``--submits`` submits of ``deepseek eval --help`` (a job that starts, runs and succeeds in a
   fraction of a second), round-robin over the tenants, released at once by ``--threads`` client
   threads with keep-alive connections; each request's latency as the client saw it.
3. Wait until every accepted job ended, replay the audit log (``loadcheck.replay``), and print
   accepted/refused counts, the replay's verdict and peaks, and p50/p99/max latency (JSON with
   ``--json``). Exit 1 if the replay found a problem or a submit is unaccounted for.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from deepseek_enterprise.service import loadcheck


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", help="SQLAlchemy URL of an empty database (default: SQLite in the root)")
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--queued", type=int, default=10)
    parser.add_argument("--running", type=int, default=1)
    parser.add_argument("--slots", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    a = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="service-load-")) / "srv"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_TOKEN", "DEEPSEEK_DB_URL")}
    if a.db:
        env["DEEPSEEK_DB_URL"] = a.db
    server = subprocess.Popen([sys.executable, "-m", "deepseek", "server", "--root", str(root), "--port", str(port),
                               "--slots", str(a.slots), "--devices", "none"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        if not server.stdout.readline().startswith("new database"):
            raise SystemExit(f"the server did not start on a new database:\n{server.stderr.read()[-2000:]}")
        admin = server.stdout.readline().strip()
        url = f"http://127.0.0.1:{port}"
        http = httpx.Client(base_url=url, timeout=120)
        for _ in range(300):
            try:
                http.get("/openapi.json")
                break
            except httpx.HTTPError:
                time.sleep(0.2)

        def call(method: str, path: str, token: str, **kw: object) -> httpx.Response:
            r = http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)
            if r.status_code >= 400:
                raise SystemExit(f"{method} {path}: {r.status_code} {r.text}")
            return r

        tenants = [f"t{i}" for i in range(a.tenants)]
        tokens = {}
        for t in tenants:
            call("POST", "/v1/tenants", admin, json={"name": t, "quota": {"queued_jobs": a.queued,
                                                                          "running_jobs": a.running}})
            call("POST", f"/v1/tenants/{t}/users", admin, json={"name": f"{t}-user"})
            tokens[t] = call("POST", f"/v1/tenants/{t}/users/{t}-user/tokens", admin, json={}).json()["token"]
            call("GET", "/v1/me", tokens[t])
        plan = [(tenants[i % a.tenants], tokens[tenants[i % a.tenants]]) for i in range(a.submits)]
        t0 = time.perf_counter()
        submits = loadcheck.burst(url, plan, {"command": "eval", "args": ["--help"]}, threads=a.threads)
        wall = time.perf_counter() - t0
        while True:
            jobs = [j for t in tenants for j in call("GET", f"/v1/tenants/{t}/jobs?limit=10000", tokens[t]).json()]
            if all(j["state"] not in ("queued", "starting", "running") for j in jobs):
                break
            time.sleep(0.5)
        audit = call("GET", "/v1/audit?limit=10000", admin).json()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    seen = loadcheck.replay(audit, {t: loadcheck.Limits(a.queued, a.running) for t in tenants}, a.slots,
                            devices=[])  # --devices none: no job may hold a GPU
    accepted = sorted(s.job_id for s in submits if s.status == 201 and s.job_id is not None)
    accounted = accepted == sorted(seen.accepted) == sorted(j["id"] for j in jobs)
    report = {
        "submits": a.submits, "tenants": a.tenants, "threads": a.threads, "db": "postgresql" if a.db else "sqlite",
        "accepted": len(accepted), "refused": {str(k): v for k, v in sorted(
            {s.status: sum(1 for x in submits if x.status == s.status) for s in submits if s.status != 201}.items())},
        "burst_s": round(wall, 2), "submits_per_s": round(a.submits / wall, 1),
        **{k: round(v, 1) for k, v in loadcheck.percentiles([s.seconds for s in submits]).items()},
        "accounted": accounted, "replay_problems": seen.problems[:5],
        "peak_queued": seen.peak_queued, "peak_running": seen.peak_running, "peak_running_all": seen.peak_running_all,
    }
    print(json.dumps(report, indent=None if a.json else 1))
    if seen.problems or not accounted:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
