"""The job service's reliability rules, on SQLite and PostgreSQL: lost jobs requeued by the
server's policy (through the scheduler, and for real: a server and its job killed with SIGKILL),
and device-hours per rolling period enforced (submit refused, queued jobs wait, running ones
stopped)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path

import pytest
from _servicehelpers import BACKENDS, TINY_TRAIN, Deploy, ServerProcess, database, deploy
from sqlalchemy import select

from deepseek_enterprise.service import quotas
from deepseek_enterprise.service.executor import Executor, Launch, Started, process_start
from deepseek_enterprise.service.models import AuditEntry, DeviceUse, Job, Tenant, aware
from deepseek_enterprise.service.scheduler import Scheduler
from deepseek_enterprise.service.store import Store


class Scripted(Executor):
    """An executor of the contract that starts nothing: it records each start in order, and a job
    ends (or is gone: ``False``) when the test says so."""

    def __init__(self, root: Path, grace_s: float = 30.0) -> None:
        super().__init__(root, grace_s)
        self.starts: list[int] = []
        self.codes: dict[int, int | bool] = {}
        self.terminated: list[int] = []

    def start(self, launch: Launch) -> Started:
        self.starts.append(launch.job_id)
        self.codes.pop(launch.job_id, None)
        return Started(os.getpid(), "scripted", self.root / str(launch.job_id))

    def finished(self, job_id: int, pid: int | None, pid_start: str | None, workspace: Path) -> int | None | bool:
        return self.codes.get(job_id)

    def terminate(self, pid: int | None, pid_start: str | None) -> None:
        self.terminated.append(pid or 0)


@pytest.fixture(params=BACKENDS)
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Deploy:
    with database(request.param, tmp_path / "srv") as url:
        d = deploy(tmp_path / "srv", db_url=url)
        yield d
        d.close()


def _audit(store: Store, action: str) -> list[tuple[str, str]]:
    with store.session() as s:
        return [(e.target, e.result) for e in s.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                                         .order_by(AuditEntry.id))]


def _states(store: Store, ids: list[int]) -> list[tuple[str, int]]:
    with store.session() as s:
        return [(s.get(Job, i).state, s.get(Job, i).attempts) for i in ids]


def test_lost_jobs_are_requeued_in_their_place_up_to_the_policy(svc: Deploy) -> None:
    svc.tenant("acme", running_jobs=1)
    bob = svc.user("acme", "bob", "member")
    j1, j2, j3 = (svc.submit("acme", bob).json()["id"] for _ in range(3))
    ex = Scripted(svc.root)
    sched = Scheduler(svc.store, ex, slots=1, gpus=[], requeue_lost=1)
    sched.step()
    assert ex.starts == [j1]
    ex.codes[j1] = False  # gone without an exit code: requeued, and still first of its tenant
    sched.step()
    assert ex.starts == [j1, j1] and _states(svc.store, [j1, j2, j3]) == [("running", 2), ("queued", 0), ("queued", 0)]
    ex.codes[j1] = False  # lost again: the policy allows 1 requeue, so it stays lost
    sched.step()
    assert ex.starts == [j1, j1, j2]
    assert _states(svc.store, [j1, j2, j3]) == [("lost", 2), ("running", 1), ("queued", 0)]
    assert _audit(svc.store, "job.requeue") == [(f"job {j1}", "attempt 1 lost; requeued (at most 2 starts)")]
    assert _audit(svc.store, "job.lost") == [(f"job {j1}", "the job's process is gone and left no exit code")]
    # a job whose cancel was asked is never requeued
    assert svc.call("POST", f"/v1/tenants/acme/jobs/{j2}/cancel", bob).json()["cancel_requested"] is True
    ex.codes[j2] = False
    sched.step()
    assert _states(svc.store, [j2, j3]) == [("lost", 1), ("running", 1)]
    # the default policy (0): lost stays lost
    ex.codes[j3] = False
    Scheduler(svc.store, ex, slots=1, gpus=[]).step()
    assert _states(svc.store, [j3]) == [("lost", 1)]
    shown = svc.call("GET", f"/v1/tenants/acme/jobs/{j1}", bob).json()
    assert (shown["state"], shown["attempts"]) == ("lost", 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_job_lost_with_its_server_is_requeued_after_a_sigkill_restart(backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path / "srv") as url:
        srv = ServerProcess(tmp_path / "srv", "--slots", "1", "--requeue-lost", "1", db_url=url)
        try:
            tok = srv.setup({"acme": {"running_jobs": 1}})["acme"]
            # no --run-dir: each attempt writes runs/<timestamp> of its own
            first = srv.call("POST", "/v1/tenants/acme/jobs", tok, json={
                "command": "train", "args": [*TINY_TRAIN, "--max-steps", "20"]}).json()["id"]
            second = srv.call("POST", "/v1/tenants/acme/jobs", tok, json={
                "command": "train", "args": [*TINY_TRAIN, "--run-dir", "runs/second"]}).json()["id"]
            deadline = time.monotonic() + 60
            while srv.call("GET", f"/v1/tenants/acme/jobs/{first}", tok).json()["state"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.1)
        finally:
            srv.kill()
        store = Store(url)
        with store.session() as s:
            pid = s.get(Job, first).pid
        os.killpg(pid, signal.SIGKILL)  # the job dies with its server (a reboot): no exit code
        while process_start(pid) is not None:
            time.sleep(0.05)
        store.engine.dispose()
        again = ServerProcess(tmp_path / "srv", "--slots", "1", "--requeue-lost", "1", db_url=url, new=False)
        try:
            end = time.monotonic() + 240
            while True:
                jobs = {j["id"]: j for j in again.call("GET", "/v1/tenants/acme/jobs", tok).json()}
                if {jobs[first]["state"], jobs[second]["state"]} <= {"succeeded", "failed", "lost"}:
                    break
                assert time.monotonic() < end, jobs
                time.sleep(0.3)
            audit = again.call("GET", "/v1/audit?tenant=acme&limit=100", srv.token).json()
        finally:
            again.kill()
    a, b = jobs[first], jobs[second]
    assert (a["state"], a["attempts"], b["state"], b["attempts"]) == ("succeeded", 2, "succeeded", 1), (a, b)
    assert a["started_at"] < b["started_at"]  # the requeued job kept its place before the later one
    actions = [(e["action"], e["target"]) for e in reversed(audit)]
    assert actions.index(("job.requeue", f"job {first}")) < actions.index(("job.start", f"job {second}"))
    assert [e["result"] for e in audit if e["action"] == "job.requeue"] == ["attempt 1 lost; requeued (at most 2 starts)"]


def _use(store: Store, tenant: str, job: int, devices: int, start: dt.datetime, hours: float) -> None:
    with store.session() as s:
        t = s.scalar(select(Tenant).where(Tenant.name == tenant))
        s.add(DeviceUse(tenant_id=t.id, job_id=job, devices=devices, started_at=start,
                        ended_at=start + dt.timedelta(hours=hours)))


def test_device_hours_count_only_the_rolling_window(svc: Deploy) -> None:
    svc.tenant("acme", devices=2, device_hours=3, period_days=30)
    bob = svc.user("acme", "bob", "member")
    job = svc.submit("acme", bob).json()["id"]
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
    day = dt.timedelta(days=1)
    _use(svc.store, "acme", job, 2, now - 40 * day, 10)  # wholly before the window: 0
    _use(svc.store, "acme", job, 1, now - 30 * day - dt.timedelta(hours=1), 3)  # 2 of its 3 h inside
    _use(svc.store, "acme", job, 2, now - 2 * day, 0.25)  # 0.5 device-hours
    _use(svc.store, "acme", job, -1, now - 2 * day, 5)  # not a run: ignored
    with svc.store.session() as s:
        j = s.get(Job, job)
        j.devices = 1
        j.move("starting")
        j.move("running")
        j.started_at = now - dt.timedelta(hours=1.5)  # running for 1.5 h
        t = s.scalar(select(Tenant))
        assert quotas.device_hours_used(s, t.id, 30, now) == pytest.approx(2 + 0.5 + 1.5)
        assert quotas.device_hours_used(s, t.id, 1, now) == pytest.approx(1.5)
        assert quotas.device_hours_out(s, t, now) == pytest.approx((4.0, 3.0))
        t.quota.device_hours = 4.5
        assert quotas.device_hours_out(s, t, now) is None


def test_device_hours_used_up_refuse_wait_and_stop(svc: Deploy) -> None:
    svc.client.app.state.service.pool_size = 2
    svc.tenant("acme", devices=2, running_jobs=3, device_hours=2, period_days=7)
    svc.tenant("globex", devices=1)
    bob = svc.user("acme", "bob", "member")
    gil = svc.user("globex", "gil", "member")
    ex = Scripted(svc.root)
    sched = Scheduler(svc.store, ex, slots=4, gpus=["0", "1"])
    running = svc.submit("acme", bob, devices=1).json()["id"]
    sched.step()
    now = dt.datetime.now(dt.timezone.utc)
    with svc.store.session() as s:
        s.get(Job, running).started_at = now - dt.timedelta(hours=1)  # 1 device-hour so far
    _use(svc.store, "acme", running, 2, now - dt.timedelta(days=1), 0.25)  # + 0.5
    waiting = svc.submit("acme", bob, devices=1).json()["id"]  # 1.5 of 2: accepted
    with svc.store.session() as s:
        s.get(Job, running).started_at = now - dt.timedelta(hours=1.5)  # now 2.0 of 2: used up
    r = svc.submit("acme", bob, devices=2)
    assert r.status_code == 409 and r.json()["detail"].startswith(
        "tenant 'acme' used 2.00 of its 2 device-hours in the last 7 days (quota device_hours)"), r.text
    cpu = svc.submit("acme", bob, devices=0)
    assert cpu.status_code == 201  # a job without devices uses no device-hours
    assert svc.submit("globex", gil, devices=1).status_code == 201  # another tenant's hours are its own
    ex.starts.clear()
    sched.step()
    with svc.store.session() as s:
        run, wait = s.get(Job, running), s.get(Job, waiting)
        assert wait.state == "queued" and run.cancel_requested  # waits; the running one is stopped
        assert run.message == "stopped: tenant 'acme' used 2.00 of its 2 device-hours in the last 7 days (quota device_hours)"
        globex_job = s.scalar(select(Job).join(Tenant).where(Tenant.name == "globex"))
        assert ex.starts == [globex_job.id]  # acme's CPU job stays behind its waiting head
    assert ex.terminated and _audit(svc.store, "job.stop") == [(f"job {running}", run.message)]
    ex.codes[running] = 75  # deepseek train's exit after its checkpoint
    sched.step()
    with svc.store.session() as s:
        run = s.get(Job, running)
        assert (run.state, run.exit_code) == ("cancelled", 75) and run.message.startswith("stopped: tenant 'acme'")
        uses = s.scalars(select(DeviceUse).where(DeviceUse.job_id == running).order_by(DeviceUse.id)).all()
        assert len(uses) == 2 and uses[1].devices == 1 and aware(uses[1].ended_at) > now
        assert s.get(Job, waiting).state == "queued"
    # a platform admin raises the quota: the waiting job starts, then the CPU job behind it
    assert svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, json={"device_hours": 10}).status_code == 200
    sched.step()
    assert ex.starts[-2:] == [waiting, cpu.json()["id"]]
