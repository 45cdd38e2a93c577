"""The scheduler's rules for a ``starting`` job (how the executors find a start after a restart
is in test_service_start_find.py, the crash tests in test_service_start_window.py).

A job found never started goes back to the queue or is cancelled; a starting job keeps its GPUs
and can be cancelled; a cancel while the executor cannot take the job ends it unstarted; a
``reserve`` answer the database cannot keep fails the job in one line; a second server on the
same root is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _servicehelpers import ServerProcess, deploy
from sqlalchemy import select
from test_service_reliability import Scripted
from test_service_start_window import _about

from deepseek_enterprise.service.executor import (
    Launch,
    LocalExecutor,
    Started,
    Unavailable,
)
from deepseek_enterprise.service.models import AuditEntry, Job
from deepseek_enterprise.service.scheduler import Scheduler


def test_a_starting_job_found_never_started_goes_back_or_is_cancelled(tmp_path: Path) -> None:
    """Through the scheduler with an executor of the contract: a starting job the executor cannot
    place yet stays starting; one it never started is queued again (no attempt counted, ahead of
    later jobs) or, with its cancel asked, cancelled; quotas count it as running meanwhile."""
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=1)
        bob = d.user("acme", "bob", "member")
        first, second, third = (d.submit("acme", bob).json()["id"] for _ in range(3))

        class Finding(Scripted):
            answer: Started | None | Exception = None

            def find(self, launch: Launch) -> Started | None:
                if isinstance(self.answer, Exception):
                    raise self.answer
                return self.answer

        ex = Finding(d.root)
        sched = Scheduler(d.store, ex, slots=1, gpus=[])
        with d.store.session() as s:  # what a server killed after the starting commit leaves
            s.get(Job, first).move("starting")
        ex.answer = Unavailable("cannot tell yet")
        sched.step()
        with d.store.session() as s:
            assert [s.get(Job, j).state for j in (first, second)] == ["starting", "queued"]  # a running slot held
        assert ex.starts == []
        ex.answer = None
        sched.step()
        assert ex.starts == [first]  # back in its place, ahead of the later ones, then started
        with d.store.session() as s:
            assert (s.get(Job, first).state, s.get(Job, first).attempts) == ("running", 1)
            s.get(Job, second).move("starting")
            s.get(Job, second).cancel_requested = True
        ex.codes[first] = 0
        sched.step()
        with d.store.session() as s:
            assert s.get(Job, second).state == "cancelled" and s.get(Job, second).message == "cancelled before it started"
        assert ex.starts == [first, third]
    finally:
        d.close()


def test_a_starting_job_keeps_its_gpus_and_can_be_cancelled_through_the_api(tmp_path: Path) -> None:
    """While a job is starting (here: left by a killed server, its executor cannot tell yet) no
    other job gets its GPU; a cancel through the API answers 'stopping' and leaves it starting."""
    d = deploy(tmp_path / "srv")
    try:
        for name in ("acme", "globex"):
            d.tenant(name, running_jobs=2, devices=1)
        bob, gil = d.user("acme", "bob", "member"), d.user("globex", "gil", "member")
        first, second = d.submit("acme", bob).json()["id"], d.submit("globex", gil).json()["id"]
        with d.store.session() as s:
            for j in (first, second):
                s.get(Job, j).devices = 1
            s.get(Job, first).move("starting", gpus="0")

        class Undecided(Scripted):
            def find(self, launch: Launch) -> Started | None:
                raise Unavailable("cannot tell yet")

        ex = Undecided(d.root)
        Scheduler(d.store, ex, slots=2, gpus=["0"]).step()
        assert ex.starts == []  # GPU 0 is the starting job's
        with d.store.session() as s:
            assert [s.get(Job, j).state for j in (first, second)] == ["starting", "queued"]
        r = d.call("POST", f"/v1/tenants/acme/jobs/{first}/cancel", bob)
        assert r.status_code == 200 and (r.json()["state"], r.json()["cancel_requested"]) == ("starting", True)
        with d.store.session() as s:
            entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "job.cancel")).one()
            assert (entry.target, entry.result) == (f"job {first}", "ok: stopping")
    finally:
        d.close()


def test_a_job_cancelled_while_the_executor_cannot_take_it_never_starts(tmp_path: Path) -> None:
    """Cancel asked while the job is starting, then the executor says it cannot take jobs now
    (Slurm's controller down): the job ends cancelled, never queued again with its cancel asked
    (it used to go back to the queue and be started, then stopped)."""
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=1)
        bob = d.user("acme", "bob", "member")
        job_id = d.submit("acme", bob).json()["id"]
        calls: list[str] = []

        class Down(Scripted):
            def start(self, launch: Launch) -> Started:
                r = d.call("POST", f"/v1/tenants/acme/jobs/{launch.job_id}/cancel", bob)
                calls.append(r.json()["state"])
                raise Unavailable("sbatch failed and squeue does not answer either")

        sched = Scheduler(d.store, Down(d.root), slots=1, gpus=[], retry_s=0)
        sched.step()
        sched.step()
        assert calls == ["starting"]  # started once, never again
        with d.store.session() as s:
            job = s.get(Job, job_id)
            assert (job.state, job.message, job.attempts, job.started_at) == (
                "cancelled", "cancelled before it started", 0, None)
            actions = [a for a, t in s.execute(select(AuditEntry.action, AuditEntry.target).order_by(AuditEntry.id))
                       if _about(t, job_id)]
            assert actions == ["job.submit", "job.starting", "job.cancel", "job.cancelled"]
    finally:
        d.close()


def test_a_reserve_answer_the_database_cannot_keep_fails_the_job_with_one_line(tmp_path: Path) -> None:
    """An executor plugin whose reserve() returns more than 32 characters (PostgreSQL's column
    would refuse the starting commit on every pass, SQLite would keep it): the job fails, saying
    so, the same on every database; nothing is started."""
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=1)
        bob = d.user("acme", "bob", "member")
        job_id = d.submit("acme", bob).json()["id"]

        class LongNames(Scripted):
            def reserve(self, job_id: int) -> str:
                return f"acme-k8s-job-{job_id}-" + "0" * 24

        ex = LongNames(d.root)
        Scheduler(d.store, ex, slots=1, gpus=[]).step()
        assert ex.starts == []
        with d.store.session() as s:
            job = s.get(Job, job_id)
            assert job.state == "failed"
            assert job.message == ("could not start: executor LongNames: reserve() returned "
                                   "'acme-k8s-job-1-000000000000000000000000', not a string of at most 32 printable "
                                   "characters (Executor.reserve)")
        # the local executor's reserve() refusing a link in place of the job's state folder
        second = d.submit("acme", bob).json()["id"]
        (d.root / "jobstate").mkdir(exist_ok=True)
        os.symlink(tmp_path, d.root / "jobstate" / str(second))
        Scheduler(d.store, LocalExecutor(d.root), slots=1, gpus=[]).step()
        with d.store.session() as s:
            job = s.get(Job, second)
            assert (job.state, job.started_at) == ("failed", None)
            assert job.message == (f"could not start: {d.root}/jobstate/{second} is not a folder of the server's "
                                   "(a symbolic link?)")
    finally:
        d.close()


def test_a_second_server_on_the_same_root_is_refused_before_it_touches_a_job(tmp_path: Path) -> None:
    """A second ``deepseek server`` on a root a live server uses (an operator's slip, a restart
    racing the old process) would take the first one's starting jobs for a killed server's and
    start them again: it stops at once with one line, exit 2; once the first is gone it starts."""
    root = tmp_path / "srv"
    first = ServerProcess(root, "--slots", "1")
    try:
        tok = first.setup({"acme": {"running_jobs": 1}})["acme"]
        job_id = first.call("POST", "/v1/tenants/acme/jobs", tok, json={"command": "eval", "args": ["--help"]}).json()["id"]
        second = subprocess.run([sys.executable, "-m", "deepseek", "server", "--root", str(root), "--port", str(first.port),
                                 "--devices", "none"], capture_output=True, text=True, timeout=120,
                                env={k: v for k, v in os.environ.items() if k != "DEEPSEEK_DB_URL"})
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip().splitlines() == [
            f"error: --root {root}: another deepseek server runs on it (it holds {root}/server.lock); run one server "
            "per root and database"]
        actions = [e["action"] for e in first.call("GET", "/v1/audit?limit=100", first.token).json()
                   if _about(e["target"], job_id)]
        assert actions.count("job.starting") == 1 and "job.requeue" not in actions  # untouched by the second
    finally:
        first.kill()
    again = ServerProcess(root, "--slots", "1", new=False)
    again.kill()
