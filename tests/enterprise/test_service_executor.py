"""The local executor for real: ``deepseek train`` jobs run through the scheduler in their
tenant's workspace, a cancel stops one with its checkpoint, the environment is scrubbed, rlimits
and the device mask applied, and a restarted server concludes or marks lost what it left running."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _servicehelpers import TINY_TRAIN, deploy
from sqlalchemy import select

from deepseek_enterprise.service import jobstate
from deepseek_enterprise.service.executor import (
    Executor,
    Launch,
    LocalExecutor,
    Started,
    process_start,
)
from deepseek_enterprise.service.models import Job, Tenant, User
from deepseek_enterprise.service.scheduler import Scheduler


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _limit(pid: int, name: str) -> str:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if x.startswith(name))
    return line[len(name):].split()[0]


def test_jobs_run_isolated_finish_and_cancel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS_SERVER_SECRET", "hunter2")
    monkeypatch.setenv("DEEPSEEK_DB_URL", "postgresql://admin:pw@db/service")
    d = deploy(tmp_path / "srv", run=True, slots=2, grace_s=60)
    try:
        d.tenant("acme", running_jobs=2, memory_bytes=64 << 30, cpu_seconds=3600)
        bob = d.user("acme", "bob", "member")
        done = d.submit("acme", bob, args=[*TINY_TRAIN, "--run-dir", "runs/tiny"]).json()["id"]
        long = d.submit("acme", bob, args=[*TINY_TRAIN, "--max-steps", "100000", "--run-dir", "runs/long",
                                           "--set", "checkpoint.interval=0", "--set", "train.eval_interval=0"]).json()
        job = d.wait("acme", bob, long["id"], {"running", "failed"})
        assert job["state"] == "running", job
        ws = Path(job["workspace"])
        assert ws == d.root / "tenants" / "acme" / "jobs" / str(long["id"])
        for folder in (ws, ws.parent.parent):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        with d.store.session() as s:
            pid = s.get(Job, long["id"]).pid
        deadline = time.monotonic() + 60
        while not (kids := _children(pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert os.getpgid(pid) == pid and os.getpgid(kids[0]) == pid  # its own process group
        for p in (pid, kids[0]):
            env = _environ(p)
            assert "DS_SERVER_SECRET" not in env and "DEEPSEEK_DB_URL" not in env
            assert not any("hunter2" in v or "postgresql" in v for v in env.values())
            assert env["HOME"] == str(ws) and env["TMPDIR"] == str(ws / "tmp") and env["CUDA_VISIBLE_DEVICES"] == ""
            assert _limit(p, "Max address space") == str(64 << 30)
            assert _limit(p, "Max cpu time") == "3600"
            assert _limit(p, "Max core file size") == "0"
        # the small job succeeds, its run folder in its workspace
        small = d.wait("acme", bob, done, {"succeeded", "failed"})
        log = d.call("GET", f"/v1/tenants/acme/jobs/{done}/logs", bob).json()
        assert small["state"] == "succeeded" and small["exit_code"] == 0, log["text"][-2000:]
        run = Path(small["workspace"]) / "runs" / "tiny"
        assert (run / "config.toml").is_file() and (run / "checkpoints" / "step-2" / "model.safetensors").is_file()
        assert [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()][-1] == 2
        state = d.root / "jobstate" / str(done)  # the server's, outside the tenant's folder
        assert (state / "exit_code").read_text() == "0\n" and not (Path(small["workspace"]) / "exit_code").exists()
        assert stat.S_IMODE(state.stat().st_mode) == stat.S_IMODE(state.parent.stat().st_mode) == 0o700
        # cancel: SIGTERM to the group, deepseek train writes a checkpoint and exits 75
        deadline = time.monotonic() + 120  # training under way: its SIGTERM handler is installed
        while not (ws / "runs" / "long" / "metrics.jsonl").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        r = d.call("POST", f"/v1/tenants/acme/jobs/{long['id']}/cancel", bob)
        assert r.status_code == 200 and r.json()["cancel_requested"] is True
        job = d.wait("acme", bob, long["id"], {"cancelled", "failed", "succeeded"})
        assert job["state"] == "cancelled" and job["exit_code"] == 75, d.call(
            "GET", f"/v1/tenants/acme/jobs/{long['id']}/logs", bob).json()["text"][-2000:]
        assert process_start(pid) is None and list((ws / "runs" / "long" / "checkpoints").glob("step-*"))
        actions = [(r["action"], r["target"]) for r in d.call("GET", "/v1/audit?tenant=acme", d.admin).json()]
        assert ("job.succeeded", f"job {done}") in actions and ("job.cancelled", f"job {long['id']}") in actions
    finally:
        d.close()


def test_a_restarted_server_concludes_reattaches_or_marks_lost(tmp_path: Path) -> None:
    d = deploy(tmp_path / "srv")
    d.tenant("acme")
    bob = d.user("acme", "bob", "member")
    ids = [d.submit("acme", bob).json()["id"] for _ in range(4)]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        with d.store.session() as s:
            jobs = [s.get(Job, i) for i in ids]
            for job in jobs[:3]:
                job.move("starting")
                job.move("running", workspace=str(tmp_path / f"ws{job.id}"))
                Path(job.workspace).mkdir()
            jobs[0].pid, jobs[0].pid_start = gone.pid, "12345"  # gone, no exit code: lost
            jobs[1].pid, jobs[1].pid_start = gone.pid, "12345"  # ended while the server was down
            (jobstate.make(d.root, jobs[1].id) / "exit_code").write_text("0\n")  # where the wrapper writes it
            jobs[2].pid, jobs[2].pid_start = alive.pid, process_start(alive.pid)  # still running
        d.close()
        again = deploy(tmp_path / "srv")
        sched = Scheduler(again.store, LocalExecutor(again.root), slots=0, gpus=[])
        sched.recover()
        with again.store.session() as s:
            states = [s.get(Job, i).state for i in ids]
        assert states == ["lost", "succeeded", "running", "queued"]
        alive.kill()
        alive.wait()
        sched.step()
        with again.store.session() as s:
            assert s.get(Job, ids[2]).state == "lost"
            assert s.get(Job, ids[3]).state == "queued"  # slots=0: nothing starts
        again.close()
    finally:
        alive.kill()
        alive.wait()


def test_a_job_whose_workspace_became_a_link_fails_to_start(tmp_path: Path) -> None:
    d = deploy(tmp_path / "srv", run=False)
    try:
        d.tenant("acme")
        bob = d.user("acme", "bob", "member")
        tenant = d.root / "tenants" / "acme"
        (tenant / "data").mkdir(parents=True)
        job = d.submit("acme", bob, args=["--set", f"data.path=\"{tenant}/data/in\""]).json()["id"]
        os.symlink("/etc", tenant / "data" / "in")  # after the submit's check
        sched = Scheduler(d.store, LocalExecutor(d.root), slots=1, gpus=[])
        sched.step()
        with d.store.session() as s:
            row = s.get(Job, job)
            assert row.state == "failed" and "is a symbolic link" in row.message and row.pid is None
            assert s.scalar(select(Tenant.name)) == "acme" and s.scalar(select(User).where(User.name == "bob"))
    finally:
        d.close()


class Recording(Executor):
    """An executor of our own contract that starts nothing: it records each launch, and a job
    ends when the test says so."""

    def __init__(self, root: Path, grace_s: float = 30.0) -> None:
        super().__init__(root, grace_s)
        self.launches: dict[int, Launch] = {}
        self.codes: dict[int, int] = {}

    def start(self, launch: Launch) -> Started:
        self.launches[launch.job_id] = launch
        return Started(os.getpid(), "recorded", self.root / str(launch.job_id))

    def finished(self, job_id: int, pid: int | None, pid_start: str | None, workspace: Path) -> int | None | bool:
        return self.codes.get(job_id)


def test_gpus_are_never_shared_and_follow_the_device_quota(tmp_path: Path) -> None:
    d = deploy(tmp_path / "srv")
    d.client.app.state.service.pool_size = 2
    try:
        d.tenant("acme", devices=2, running_jobs=5)
        d.tenant("globex", devices=1, running_jobs=5)
        bob, gil = d.user("acme", "bob", "member"), d.user("globex", "gil", "member")
        a1 = d.submit("acme", bob, devices=1).json()["id"]
        g1 = d.submit("globex", gil, devices=1).json()["id"]
        a2 = d.submit("acme", bob, devices=1).json()["id"]
        g2 = d.submit("globex", gil, devices=0).json()["id"]
        r = d.submit("globex", gil, devices=2)
        assert r.status_code == 409 and "may hold 1 (quota devices)" in r.json()["detail"]
        ex = Recording(d.root)
        sched = Scheduler(d.store, ex, slots=4, gpus=["0", "1"])
        sched.step()
        gpus = {j: ex.launches[j].gpus for j in ex.launches}
        assert gpus == {a1: ["0"], g1: ["1"], g2: []}  # a2 waits: both GPUs are held
        ex.codes[a1] = 0
        sched.step()
        assert ex.launches[a2].gpus == ["0"]
        with d.store.session() as s:
            assert {j: s.get(Job, j).gpus for j in (a1, g1, a2, g2)} == {a1: "0", g1: "1", a2: "0", g2: ""}
            assert s.get(Job, a1).state == "succeeded"
    finally:
        d.close()
