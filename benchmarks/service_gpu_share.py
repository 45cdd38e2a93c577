"""Two tenants' jobs share one GPU through the job service; the one over its share fails with
out of memory while the other keeps training and succeeds (issue 17).

It starts ``deepseek server`` (local executor, SQLite, a temporary root, GPU pool ``0``, two
slots), creates tenants ``acme`` and ``globex`` whose quota lets their jobs share a GPU
(``gpu_memory_fraction``, default 0.4 each), and submits two ``deepseek train`` jobs:

- acme's job A: a ``small`` GPT (85.8 M) training run that fits in its share (32 x 512 tokens a
  step, about 8 GB by the estimate below; 1200 steps);
- globex's job B: the same model with a batch beyond its share but within the GPU (256 x 1024
  tokens a step: about 40 x d_model bytes a token a layer kept for the backward pass, 12 layers:
  ~97 GB: over 0.4 x 141 GB = 56 GB, under what A leaves free). Without the cap B would fit next
  to A; with it B fails.

B is submitted once A has trained 20 steps; both then hold GPU 0 together, B's process capped to
its fraction of the GPU's memory: B fails with ``out of GPU memory`` while A goes on training,
and A succeeds. It prints and writes JSON: each job's state, message, GPUs and share, steps, tokens/s (median of the run's ``metrics.jsonl``
after the first steps), peak GPU memory (the job's own log line, PyTorch's allocator), the
isolation line, and the checks; exit code 0 when all checks pass, 1 otherwise, 2 when it cannot
run here.

``--device cpu`` is a dry run of the same orchestration on a machine without a GPU: the pool
still names GPU 0 (so the sharing and the cap variable are exercised; the cap says it is not
applied), the model a two-layer ``tiny`` on the CPU, and B fails by its tenant's
``memory-bytes`` instead (a 10 GB embedding under a 4 GiB RLIMIT_AS).

Run (the editions must import under ``python -I``, as jobs run that way):
``bash benchmarks/service_gpu_share.sh`` on the device machine (after ``bash
benchmarks/prepare_device.sh`` here), or ``python benchmarks/service_gpu_share.py --device cpu``
with the editions installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

PEAK = re.compile(r"\[deepseek server\] peak GPU memory \(GiB\): allocated ([0-9.]+), reserved ([0-9.]+)")
FINAL = {"succeeded", "failed", "cancelled", "lost"}
A_STEPS = {"cuda": 1200, "cpu": 300}
B_AFTER_STEPS = 20
"""B is submitted once A's metrics show this many steps (so A trains before, during and after B)."""
"""Job A's steps by default: long enough to still be training when B fails."""


def jobs_for(device: str, a_steps: int, b_batch: int = 256) -> tuple[list[str], list[str]]:
    """The ``deepseek train`` arguments of job A (fits) and job B (over its share)."""
    common = ["--set", "logging.plot=false", "--set", "train.eval_interval=0", "--set", "checkpoint.interval=0",
              "--quiet"]
    if device == "cpu":
        tiny = ["--set", "model.name=tiny", "--set", "model.d_model=64", "--set", "model.n_heads=2",
                "--set", "model.n_layers=2", "--set", "model.max_seq_len=64", "--set", "data.seq_len=64",
                "--set", "data.batch_size=8", "--set", "data.eval_batches=1", "--set", "strategy.device=\"cpu\"",
                "--precision", "fp32", *common]
        return ([*tiny, "--max-steps", str(a_steps), "--run-dir", "runs/a"],
                [*tiny, "--set", "model.vocab_size=40000000", "--max-steps", "5", "--run-dir", "runs/b"])
    small = ["--set", "model.name=small", "--set", "model.max_seq_len=1024", "--set", "data.eval_batches=1",
             "--precision", "bf16", *common]
    return ([*small, "--set", "data.seq_len=512", "--set", "data.batch_size=32", "--max-steps", str(a_steps),
             "--run-dir", "runs/a"],
            [*small, "--set", "data.seq_len=1024", "--set", f"data.batch_size={b_batch}", "--max-steps", "20",
             "--run-dir", "runs/b"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """The server's HTTP API as one user; an error answer stops the script with its detail."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            raise SystemExit(f"error: {method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()


def start_server(root: Path, port: int, log: Path) -> tuple[subprocess.Popen[str], str, str]:
    """``deepseek server`` on ``root``: the process, the admin token, its job-limits line."""
    cmd = [sys.executable, "-m", "deepseek", "server", "--root", str(root), "--port", str(port), "--slots", "2",
           "--devices", "0", "--grace", "10"]
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_DB_URL", "DEEPSEEK_TOKEN")}
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    assert proc.stdout is not None
    token = ""
    deadline = time.monotonic() + 90
    while not token:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"error: the server ended before printing its token: {log.read_text()[-1500:]}")
        token = line.strip() if line.startswith("dsk_") else ""
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/me", headers={"Authorization": f"Bearer {token}"},
                         timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"error: the server ended: {log.read_text()[-1500:]}")
        time.sleep(0.2)
    else:
        raise SystemExit("error: the server did not answer within 90 s")
    limits = next((x for x in log.read_text().splitlines() if x.startswith("job limits:")), "")
    return proc, token, limits


def metrics(run: Path) -> dict[str, Any]:
    rows = []
    try:
        for line in run.joinpath("metrics.jsonl").read_text().splitlines():
            row = json.loads(line)
            if isinstance(row, dict) and "tokens_per_s" in row:
                rows.append(row)
    except (OSError, ValueError):
        pass
    steady = rows[max(1, len(rows) // 10):] or rows
    tps = [float(r["tokens_per_s"]) for r in steady]
    return {"steps": rows[-1]["step"] if rows else 0,
            "tokens_per_s_median": round(statistics.median(tps), 1) if tps else None,
            "last_loss": rows[-1].get("loss") if rows else None}


def gpu_used_mib() -> int | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        return int(out.splitlines()[0])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def report(job: dict[str, Any]) -> dict[str, Any]:
    ws = Path(job["workspace"]) if job.get("workspace") else None
    log = (ws / "job.log").read_text(errors="replace").splitlines() if ws and (ws / "job.log").is_file() else []
    peak = next((m for m in map(PEAK.search, reversed(log)) if m), None)
    return {"id": job["id"], "tenant": job["tenant"], "state": job["state"], "exit_code": job["exit_code"],
            "message": job["message"], "gpus": job["gpus"], "gpu_fraction": job.get("gpu_fraction"),
            "isolation": log[0] if log else "",
            "peak_gpu_allocated_gib": float(peak.group(1)) if peak else None,
            "peak_gpu_reserved_gib": float(peak.group(2)) if peak else None,
            **metrics(ws / "runs" / job["tenant_run"] if ws else Path("/nonexistent")), "log_tail": log[-12:]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--fraction", type=float, default=0.4, help="each tenant's gpu_memory_fraction")
    p.add_argument("--a-steps", type=int, default=None, help="job A's steps (default: A_STEPS)")
    p.add_argument("--b-batch", type=int, default=256, help="job B's batch of 1024-token rows (cuda)")
    p.add_argument("--budget", type=float, default=200, help="seconds the jobs may take before both are cancelled")
    p.add_argument("--out", type=Path, default=Path("service_gpu_share.json"))
    p.add_argument("--keep", action="store_true", help="keep the server's temporary root")
    a = p.parse_args()
    t0 = time.monotonic()
    probe = subprocess.run([sys.executable, "-I", "-c", "import deepseek_enterprise.service.child"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        print("error: the deepseek editions do not import under 'python -I' (how jobs run): install them into "
              "this Python's site-packages (benchmarks/service_gpu_share.sh does)", file=sys.stderr)
        return 2
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA device here; use --device cpu for a dry run", file=sys.stderr)
            return 2
    root = Path(tempfile.mkdtemp(prefix="ds-gpushare-"))
    port = free_port()
    server, token, limits = start_server(root / "srv", port, root / "server.log")
    url = f"http://127.0.0.1:{port}"
    started_s = round(time.monotonic() - t0, 1)
    ids: list[int] = []
    users: dict[str, Api] = {}
    try:
        admin = Api(url, token)
        for tenant, user in (("acme", "alice"), ("globex", "gil")):
            quota: dict[str, Any] = {"devices": 1, "running_jobs": 1, "gpu_memory_fraction": a.fraction}
            if a.device == "cpu" and tenant == "globex":
                quota["memory_bytes"] = 4 << 30
            admin("POST", "/v1/tenants", json={"name": tenant, "quota": quota})
            admin("POST", f"/v1/tenants/{tenant}/users", json={"name": user, "role": "member"})
            users[tenant] = Api(url, admin("POST", f"/v1/tenants/{tenant}/users/{user}/tokens", json={})["token"])
        args_a, args_b = jobs_for(a.device, a.a_steps or A_STEPS[a.device], a.b_batch)
        ids.append(users["acme"]("POST", "/v1/tenants/acme/jobs",
                                 json={"command": "train", "args": args_a, "devices": 1})["id"])
        jobs_t0 = time.monotonic()
        while time.monotonic() - jobs_t0 < a.budget / 2:  # B comes once A is training
            ja = users["acme"]("GET", f"/v1/tenants/acme/jobs/{ids[0]}")
            if ja["state"] in FINAL or (ja["workspace"] and metrics(Path(ja["workspace"]) / "runs" / "a")["steps"]
                                        >= B_AFTER_STEPS):
                break
            time.sleep(0.5)
        a_training_s = round(time.monotonic() - jobs_t0, 1)
        ids.append(users["globex"]("POST", "/v1/tenants/globex/jobs",
                                   json={"command": "train", "args": args_b, "devices": 1})["id"])
        both_running = False
        at_b_end: dict[str, Any] = {}
        gpu_peak_mib = None
        while time.monotonic() - jobs_t0 < a.budget:
            ja = users["acme"]("GET", f"/v1/tenants/acme/jobs/{ids[0]}")
            jb = users["globex"]("GET", f"/v1/tenants/globex/jobs/{ids[1]}")
            both_running = both_running or (ja["state"] == jb["state"] == "running")
            if jb["state"] in FINAL and not at_b_end:
                run = Path(ja["workspace"]) / "runs" / "a" if ja["workspace"] else None
                at_b_end = {"a_state": ja["state"], "a_steps": metrics(run)["steps"] if run else 0,
                            "after_s": round(time.monotonic() - jobs_t0, 1)}
            used = gpu_used_mib() if a.device == "cuda" else None
            if used is not None:
                gpu_peak_mib = max(gpu_peak_mib or 0, used)
            if ja["state"] in FINAL and jb["state"] in FINAL:
                break
            time.sleep(0.5)
        jobs_s = round(time.monotonic() - jobs_t0, 1)
        for tenant, job_id in zip(("acme", "globex"), ids, strict=True):
            if users[tenant]("GET", f"/v1/tenants/{tenant}/jobs/{job_id}")["state"] not in FINAL:
                users[tenant]("POST", f"/v1/tenants/{tenant}/jobs/{job_id}/cancel")
        final = []
        for (tenant, run), job_id in zip((("acme", "a"), ("globex", "b")), ids, strict=True):
            job = users[tenant]("GET", f"/v1/tenants/{tenant}/jobs/{job_id}")
            deadline = time.monotonic() + 20
            while job["state"] not in FINAL and time.monotonic() < deadline:
                time.sleep(0.5)
                job = users[tenant]("GET", f"/v1/tenants/{tenant}/jobs/{job_id}")
            final.append(report({**job, "tenant_run": run}))
        ja, jb = final
        oom = "out of GPU memory" if a.device == "cuda" else "out of memory"
        checks = {
            "shared_gpu_0": ja["gpus"] == jb["gpus"] == "0" and ja["gpu_fraction"] == jb["gpu_fraction"] == a.fraction,
            "ran_side_by_side": both_running,
            "b_failed_out_of_memory": jb["state"] == "failed" and jb["message"].startswith(oom),
            "a_training_when_b_failed": at_b_end.get("a_state") == "running" and at_b_end.get("a_steps", 0) > 0,
            "a_trained_on_after_b_failed": ja["steps"] > at_b_end.get("a_steps", ja["steps"]),
            "a_succeeded": ja["state"] == "succeeded" and ja["steps"] == (a.a_steps or A_STEPS[a.device]),
        }
        result = {"device": a.device, "fraction": a.fraction, "server_start_s": started_s,
                  "a_training_after_s": a_training_s, "jobs_s": jobs_s,
                  "wall_s": round(time.monotonic() - t0, 1), "job_limits": limits, "a_at_b_end": at_b_end,
                  "gpu0_used_peak_mib": gpu_peak_mib, "jobs": {"A": ja, "B": jb}, "checks": checks,
                  "ok": all(checks.values())}
    finally:
        for tenant, job_id in zip(("acme", "globex"), ids, strict=False):  # never leave a job running
            try:
                for _ in range(40):
                    if users[tenant]("GET", f"/v1/tenants/{tenant}/jobs/{job_id}")["state"] in FINAL:
                        break
                    users[tenant]("POST", f"/v1/tenants/{tenant}/jobs/{job_id}/cancel")
                    time.sleep(0.5)
            except (SystemExit, httpx.HTTPError):
                pass
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, j in result["jobs"].items():
        print(f"{name} {j['tenant']}: {j['state']} gpus={j['gpus']} share={j['gpu_fraction']} steps={j['steps']} "
              f"tokens/s={j['tokens_per_s_median']} peak={j['peak_gpu_allocated_gib']} GiB | {j['message']}")
    print(f"checks: {json.dumps(checks)}; wall {result['wall_s']} s (server {started_s} s, jobs {jobs_s} s); "
          f"{a.out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
