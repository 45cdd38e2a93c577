"""The audit replay (``loadcheck.replay``) follows the GPUs jobs hold: the real scheduler's audit of
whole and shared GPUs replays clean; after the database is corrupted (a running job's GPUs
erased), the scheduler double-books that GPU and the replay reports it from the audit log alone;
a GPU the server does not have, and a ``job.starting`` entry that does not say its GPUs, are
reported too."""

from __future__ import annotations

import os
from pathlib import Path

from _servicehelpers import Deploy, deploy
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from deepseek_enterprise.service import loadcheck
from deepseek_enterprise.service.api import Service, create_app
from deepseek_enterprise.service.executor import Executor, Launch, Started
from deepseek_enterprise.service.models import AuditEntry, Job
from deepseek_enterprise.service.scheduler import Scheduler

POOL = ["0", "1"]


class Holding(Executor):
    """An executor of the contract whose jobs start and run until the test ends (nothing is
    launched: what is checked is the scheduler's bookkeeping of GPUs)."""

    shares_gpus = True

    def start(self, launch: Launch) -> Started:
        return Started(os.getpid(), "holding", self.root / str(launch.job_id))

    def finished(self, job_id: int, pid: int | None, pid_start: str | None, workspace: Path) -> int | None | bool:
        return None


def _audit(d: Deploy) -> list[dict]:
    with d.store.session() as s:
        return [e.as_dict() for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_the_replay_reports_a_double_booked_gpu_from_a_corrupted_database(tmp_path: Path) -> None:
    base = deploy(tmp_path / "srv")
    d = Deploy(base.root, base.store, TestClient(create_app(Service(base.store, base.root, pool_size=len(POOL)))),
               base.admin)
    try:
        d.tenant("acme", devices=2, running_jobs=2)
        d.tenant("globex", devices=2, running_jobs=2, gpu_memory_fraction=0.4)
        alice, gus = d.user("acme", "alice", "member"), d.user("globex", "gus", "member")
        acme = [d.submit("acme", alice, devices=1).json()["id"] for _ in range(2)]
        globex = [d.submit("globex", gus, devices=1).json()["id"] for _ in range(2)]
        sched = Scheduler(d.store, Holding(d.root), slots=4, gpus=POOL)
        sched.step()
        with d.store.session() as s:
            jobs = {i: (s.get(Job, i).state, s.get(Job, i).gpus, s.get(Job, i).gpu_fraction) for i in acme + globex}
        running_acme = [i for i in acme if jobs[i][0] == "running"]
        assert len(running_acme) == 1 and jobs[globex[0]][0] == jobs[globex[1]][0] == "running"
        whole = jobs[running_acme[0]][1]
        shared = jobs[globex[0]][1]
        assert {whole, shared} == set(POOL) and jobs[globex[1]][1:] == (shared, 0.4)  # 0.8 of one GPU
        audit = _audit(d)
        limits = {t: loadcheck.Limits(queued_jobs=20, running_jobs=2) for t in ("acme", "globex")}
        assert [e["result"] for e in audit if e["action"] == "job.starting" and e["target"] == f"job {globex[0]}"] \
            == [f"CUDA_VISIBLE_DEVICES='{shared}'; share 0.4 of each GPU"]
        assert loadcheck.replay(audit, limits, 4, devices=POOL).problems == []
        # a server configured with fewer devices than its jobs hold
        first = next(e for e in audit if e["action"] == "job.starting" and f"'{whole}'" in e["result"])
        assert loadcheck.replay(audit, limits, 4, devices=[shared]).problems == [
            f"audit {first['id']}: job {running_acme[0]} holds GPU '{whole}', which the server does not have "
            f"(its devices: {shared})"]

        # corrupt the database: the running whole job's GPU erased, so the scheduler sees it free
        with d.store.session() as s:
            s.execute(update(Job).where(Job.id == running_acme[0]).values(gpus=""))
        sched.step()
        waiting = next(i for i in acme if i != running_acme[0])
        with d.store.session() as s:
            assert (s.get(Job, waiting).state, s.get(Job, waiting).gpus) == ("running", whole)  # double-booked
        audit = _audit(d)
        second = [e for e in audit if e["action"] == "job.starting"][-1]
        assert second["target"] == f"job {waiting}"
        one, two = sorted((running_acme[0], waiting))
        assert loadcheck.replay(audit, limits, 4, devices=POOL).problems == [
            f"audit {second['id']}: GPU '{whole}' is held by jobs {one} (whole), {two} (whole) at once (2 of 1)"]
        assert loadcheck.replay(audit, limits, 4).problems == []  # without devices: the older checks only
    finally:
        d.close()


def test_the_replay_reads_gpu_entries_like_user_input() -> None:
    def e(i: int, action: str, target: str, result: str = "ok") -> dict:
        return {"id": i, "action": action, "tenant": "a", "target": target, "result": result}

    limits = {"a": loadcheck.Limits(queued_jobs=9, running_jobs=9)}
    start = [e(1, "job.submit", "job 1 (train)"), e(2, "job.submit", "job 2 (train)"), e(3, "job.submit", "job 3 (train)")]
    shares = [e(4, "job.starting", "job 1", "CUDA_VISIBLE_DEVICES='0'; share 0.6 of each GPU"),
              e(5, "job.starting", "job 2", "CUDA_VISIBLE_DEVICES='0'; share 0.4 of each GPU; deepseek-2-ab12cd34"),
              e(6, "job.starting", "job 3", "CUDA_VISIBLE_DEVICES='0'; share 0.1 of each GPU")]
    assert loadcheck.replay(start + shares, limits, 9, devices=["0"]).problems == [
        "audit 6: GPU '0' is held by jobs 1 (share 0.6), 2 (share 0.4), 3 (share 0.1) at once (1.1 of 1)"]
    # a job that ended gives its GPU back; a requeued one too
    ended = [*shares[:2], e(6, "job.failed", "job 1", "could not start"), e(7, "job.requeue", "job 2"),
             e(8, "job.starting", "job 3", "CUDA_VISIBLE_DEVICES='0'; share 0.1 of each GPU"),
             e(9, "job.starting", "job 2", "CUDA_VISIBLE_DEVICES='0,1'")]
    assert loadcheck.replay(start + ended, limits, 9, devices=["0", "1"]).problems == [
        "audit 9: GPU '0' is held by jobs 2 (whole), 3 (share 0.1) at once (1.1 of 1)"]
    bad = [e(4, "job.starting", "job 1", "ok"), e(5, "job.starting", "job 2", "CUDA_VISIBLE_DEVICES='0'; share 1.5 of each GPU"),
           e(6, "job.starting", "job 3", "CUDA_VISIBLE_DEVICES=\"0\"")]
    assert loadcheck.replay(start + bad, limits, 9, devices=["0"]).problems == [
        "audit 4: job.starting of job 1 does not say its GPUs ('ok')",
        "audit 5: job.starting of job 2 does not say its GPUs (\"CUDA_VISIBLE_DEVICES='0'; share 1.5 of each GPU\")",
        "audit 6: job.starting of job 3 does not say its GPUs ('CUDA_VISIBLE_DEVICES=\"0\"')"]
    none = [e(4, "job.starting", "job 1", "CUDA_VISIBLE_DEVICES=''")]  # a job without devices holds none
    assert loadcheck.replay(start + none, limits, 9, devices=[]).problems == []
