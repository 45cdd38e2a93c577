"""An executor plugin with a bug: whatever one of its methods raises beyond its contract fails that
job alone, with one line naming the executor, its distribution and the method; the slot is free
again and the server goes on with the other jobs (docs/service.md, "Jobs").

For real: ``deepseek server --executor faulty`` with a test-only executor from a throwaway
distribution (``deepseek-faultyexec``, registered through ``deepseek_register_executors`` as any
executor is), one slot, four jobs of one tenant: its ``reserve`` breaks on job 1, ``start`` on job 2,
``finished`` on job 3; job 4 runs. Cancel (``terminate``) and a restart's ``find`` through the
scheduler with the same kind of executor.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest
from _hosts import enterprise_host, registering
from _inprocess import deepseek_here
from _servicehelpers import ServerProcess, deploy
from test_service_reliability import Scripted

from deepseek_enterprise.service.executor import Launch, Started
from deepseek_enterprise.service.models import DeviceUse, Job
from deepseek_enterprise.service.scheduler import Scheduler

PLUGIN = '''
from deepseek.hookspecs import hookimpl


@hookimpl
def deepseek_register_executors(register):
    register("faulty", "deepseek_faultyexec_executors:Faulty", description="test only: breaks on jobs 1 to 3")
'''
EXECUTORS = '''
from deepseek_enterprise.service.executor import LocalExecutor


class Faulty(LocalExecutor):
    def reserve(self, job_id):
        if job_id == 1:
            raise RuntimeError("boom in reserve")
        return super().reserve(job_id)

    def start(self, launch):
        if launch.job_id == 2:
            raise ValueError("boom in start")
        return super().start(launch)

    def finished(self, job_id, pid, pid_start, workspace):
        if job_id == 3:
            raise KeyError("boom in finished")
        return super().finished(job_id, pid, pid_start, workspace)
'''
ORIGIN = "executor 'faulty' (deepseek-faultyexec 0.1, registered by deepseek_faultyexec)"
QUICK = ["--set", "model.bogus=1", "--max-steps", "1"]  # deepseek train exits 2 at once


@pytest.fixture(scope="module")
def faulty_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("faultyexec")
    (site / "deepseek_faultyexec.py").write_text(textwrap.dedent(PLUGIN))
    (site / "deepseek_faultyexec_executors.py").write_text(textwrap.dedent(EXECUTORS))
    info = site / "deepseek_faultyexec-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-faultyexec\nVersion: 0.1\n"
                                   "Requires-Dist: deepseek-enterprise\n")
    (info / "entry_points.txt").write_text("[deepseek]\nfaultyexec = deepseek_faultyexec\n")
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_an_executor_that_raises_fails_that_job_alone_named_and_the_slot_is_free(
        tmp_path: Path, faulty_env: dict[str, str]) -> None:
    srv = ServerProcess(tmp_path / "srv", "--slots", "1", "--executor", "faulty", env=faulty_env)
    try:
        tok = srv.setup({"acme": {"running_jobs": 4}})["acme"]
        ids = [srv.call("POST", "/v1/tenants/acme/jobs", tok, json={"command": "train", "args": QUICK}).json()["id"]
               for _ in range(4)]
        assert ids == [1, 2, 3, 4]
        end = time.monotonic() + 180
        while True:
            jobs = [srv.call("GET", f"/v1/tenants/acme/jobs/{i}", tok).json() for i in ids]
            if all(j["state"] in ("succeeded", "failed", "cancelled", "lost") for j in jobs):
                break
            assert time.monotonic() < end, jobs
            time.sleep(0.3)
        time.sleep(1.5)  # a few more passes: nothing more is logged for them
    finally:
        srv.kill()
    log = srv.proc.stderr.read()
    assert [(j["state"], j["message"]) for j in jobs[:3]] == [
        ("failed", f"could not start: {ORIGIN}: reserve() raised RuntimeError: boom in reserve"),
        ("failed", f"could not start: {ORIGIN}: start() raised ValueError: boom in start"),
        ("failed", f"could not watch it (its process may still run): {ORIGIN}: finished() raised KeyError: "
                   "'boom in finished'"),
    ]
    assert (jobs[0]["attempts"], jobs[1]["attempts"], jobs[2]["attempts"]) == (0, 0, 1)
    # the fourth job got the one slot and ran to its end: deepseek train refused the unknown key
    assert (jobs[3]["state"], jobs[3]["exit_code"], jobs[3]["attempts"]) == ("failed", 2, 1), jobs[3]
    assert "Traceback" not in log and "scheduler pass failed" not in log, log[-3000:]
    for i, job in zip(ids[:3], jobs[:3], strict=True):
        assert log.count(f"job {i} failed: ") == 1, log[-3000:]
        assert f"job {i} failed: {job['message']}" in log


def test_a_cancel_or_a_find_that_raises_fails_that_job_named(tmp_path: Path) -> None:
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=3, devices=1)
        bob = d.user("acme", "bob", "member")
        first, second = (d.submit("acme", bob).json()["id"] for _ in range(2))
        with d.store.session() as s:
            for i in (first, second):
                s.get(Job, i).devices = 1  # the API's pool is empty; the scheduler's has GPU 0

        class Unstoppable(Scripted):
            def terminate(self, pid: int | None, pid_start: str | None) -> None:
                raise AttributeError("no such handle")

            def find(self, launch: Launch) -> Started | None:
                raise TypeError("find is broken")

        ex = Unstoppable(d.root)
        sched = Scheduler(d.store, ex, slots=1, gpus=["0"], origin="executor unstoppable (acme 1.0)")
        sched.step()
        assert ex.starts == [first]
        assert d.call("POST", f"/v1/tenants/acme/jobs/{first}/cancel", bob).status_code == 200
        sched.step()  # terminate raises: the job fails, the slot (and GPU) is free, the second job starts
        sched.step()
        assert ex.starts == [first, second]
        with d.store.session() as s:
            job = s.get(Job, first)
            assert (job.state, job.message) == ("failed", "could not stop it (its process may still run): executor "
                                                "unstoppable (acme 1.0): terminate() raised AttributeError: no such "
                                                "handle")
            assert [u.job_id for u in s.query(DeviceUse)] == [first]  # its device time is counted
            s.get(Job, second).move("queued")  # then starting, as a server killed between its commits leaves it
            s.get(Job, second).move("starting")
        sched.recover()
        with d.store.session() as s:
            job = s.get(Job, second)
            assert (job.state, job.message) == ("failed", "could not tell whether it started (its process may run): "
                                                "executor unstoppable (acme 1.0): find() raised TypeError: find is "
                                                "broken")
    finally:
        d.close()


def test_a_registered_executor_that_is_no_executor_is_named_with_its_distribution(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = enterprise_host((registering("deepseek_register_executors", {"acme.notexec": dict}), "acme-exec"))
    code, err, out = deepseek_here(monkeypatch, tmp_path, "server", "--executor", "acme.notexec", "--root", "srv",
                                   host=host)
    assert (code, out) == (1, "")
    assert err == (f"error: --executor acme.notexec: {host.resolve('executor', 'acme.notexec').label}: registered as "
                   "<class 'dict'>, not a subclass of deepseek_enterprise.service.executor.Executor; its plugin "
                   "must register an Executor subclass (docs/service.md)")
    assert not (tmp_path / "srv").exists()


def test_a_start_that_returns_no_started_fails_that_job_named(tmp_path: Path) -> None:
    """A start() returning something else than a Started (a dict of its handle) failed the whole
    scheduler pass with a traceback naming nobody; it fails that job alone, in one line naming the
    executor, and the next job starts."""
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=3)
        bob = d.user("acme", "bob", "member")
        first, second = (d.submit("acme", bob).json()["id"] for _ in range(2))

        class Sloppy(Scripted):
            def start(self, launch: Launch) -> Started:
                started = super().start(launch)
                return {"pid": started.pid} if launch.job_id == first else started  # type: ignore[return-value]

        ex = Sloppy(d.root)
        sched = Scheduler(d.store, ex, slots=1, gpus=[], origin="executor sloppy (acme 1.0)")
        sched.step()
        assert ex.starts == [first, second]
        with d.store.session() as s:
            job = s.get(Job, first)
            assert (job.state, job.message) == ("failed", "could not start: executor sloppy (acme 1.0): start() "
                                                f"returned {{'pid': {os.getpid()}}} (dict), not a Started "
                                                "(Executor.start); what it launched may still run")
            assert s.get(Job, second).state == "running"
    finally:
        d.close()


@pytest.mark.parametrize("answer", ["0", True, 1.0, 1 << 40, {"exit": 0}], ids=["str", "True", "float", "huge", "dict"])
def test_a_finished_that_returns_no_exit_code_fails_that_job_named(tmp_path: Path, answer: object) -> None:
    """finished() returning what its contract does not allow ended the job on a wrong reading
    ('exit code 0' taken for a string, True for exit code 1) or failed the whole scheduler pass (a
    dict, a number past the database's integers); it fails that job alone, in one line naming the
    executor and the method, as start() returning no Started does."""
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=2)
        bob = d.user("acme", "bob", "member")
        first, second = (d.submit("acme", bob).json()["id"] for _ in range(2))

        class Sloppy(Scripted):
            def finished(self, job_id: int, pid: int | None, pid_start: str | None, workspace: Path) -> int | None | bool:
                return answer if job_id == first else super().finished(job_id, pid, pid_start, workspace)  # type: ignore[return-value]

        ex = Sloppy(d.root)
        sched = Scheduler(d.store, ex, slots=2, gpus=[], origin="executor sloppy (acme 1.0)")
        sched.step()
        assert ex.starts == [first, second]
        ex.codes[second] = 0
        sched.step()
        with d.store.session() as s:
            job = s.get(Job, first)
            shown = " ".join(repr(answer).split())
            assert (job.state, job.exit_code, job.message) == (
                "failed", None, "could not watch it (its process may still run): executor sloppy (acme 1.0): "
                f"finished() returned {shown} ({type(answer).__name__}), not an exit code (int), None or False "
                "(Executor.finished)")
            assert (s.get(Job, second).state, s.get(Job, second).exit_code) == ("succeeded", 0)
    finally:
        d.close()


@pytest.mark.parametrize("answer", [{"pid": 1}, 7], ids=["dict", "int"])
def test_a_find_that_returns_no_started_fails_that_job_named(tmp_path: Path, answer: object) -> None:
    """find() after a restart returning neither a Started nor None failed the whole recovery
    (AttributeError reading its pid); it fails that job alone, named."""
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=2)
        bob = d.user("acme", "bob", "member")
        first, second = (d.submit("acme", bob).json()["id"] for _ in range(2))
        with d.store.session() as s:  # as a server killed between its commits leaves them
            for i in (first, second):
                s.get(Job, i).move("starting")

        class Sloppy(Scripted):
            def find(self, launch: Launch) -> Started | None:
                return answer if launch.job_id == first else None  # type: ignore[return-value]

        sched = Scheduler(d.store, Sloppy(d.root), slots=2, gpus=[], origin="executor sloppy (acme 1.0)")
        sched.recover()
        with d.store.session() as s:
            job = s.get(Job, first)
            assert (job.state, job.message) == (
                "failed", "could not tell whether it started (its process may run): executor sloppy (acme 1.0): "
                f"find() returned {answer!r} ({type(answer).__name__}), not a Started or None (Executor.find)")
            assert s.get(Job, second).state == "queued"  # never started: back in its place
    finally:
        d.close()
