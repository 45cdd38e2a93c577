"""The start window and the exit code a job cannot write.

A server killed with SIGKILL between committing a job ``starting`` and committing it ``running``
(before the executor launched it, or right after) starts it exactly once after its restart: for
real, with a test-only executor plugin (registered through ``deepseek_register_executors``, as any
executor is) that SIGKILLs its own server inside ``start()``, on SQLite and PostgreSQL, and on the
Slurm CI cluster. The job's run folders are the counter: ``deepseek train`` without ``--run-dir``
makes one per start.

The exit code is read from the server-owned state folder, never from the workspace: a job that
fakes ``exit_code`` 0 in its workspace and fails is ``failed`` with its own code after a restart; a
garbage ``exit_code`` fails the job with a message. The state files are read like user input.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from _servicehelpers import BACKENDS, TINY_TRAIN, ServerProcess, database, deploy
from sqlalchemy import select
from test_service_slurm import SKIP as SLURM_SKIP

from deepseek_enterprise.service import jobstate
from deepseek_enterprise.service.executor import (
    LocalExecutor,
    process_start,
)
from deepseek_enterprise.service.models import AuditEntry, Job
from deepseek_enterprise.service.scheduler import Scheduler
from deepseek_enterprise.service.store import Store

CRASH_PLUGIN = '''
from deepseek.hookspecs import hookimpl


@hookimpl
def deepseek_register_executors(register):
    register("crash-before", "deepseek_crashtest_executors:KillBeforeLaunch",
             description="test only: SIGKILLs its server before it launches a job")
    register("crash-after", "deepseek_crashtest_executors:KillAfterLaunch",
             description="test only: SIGKILLs its server right after it launched a job")
    register("slurm-crash-after", "deepseek_crashtest_executors:SlurmKillAfterSubmit",
             description="test only: SIGKILLs its server right after sbatch")
'''
CRASH_EXECUTORS = '''
import os
import signal

from deepseek_enterprise.service.executor import LocalExecutor
from deepseek_enterprise.service.slurm import SlurmExecutor


def die():
    os.kill(os.getpid(), signal.SIGKILL)


class KillBeforeLaunch(LocalExecutor):
    def start(self, launch):
        die()


class KillAfterLaunch(LocalExecutor):
    def start(self, launch):
        super().start(launch)
        die()


class SlurmKillAfterSubmit(SlurmExecutor):
    def start(self, launch):
        super().start(launch)
        die()
'''


@pytest.fixture(scope="module")
def crash_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a server that sees the throwaway ``deepseek-crashtest`` distribution."""
    site = tmp_path_factory.mktemp("crashtest")
    (site / "deepseek_crashtest.py").write_text(textwrap.dedent(CRASH_PLUGIN))
    (site / "deepseek_crashtest_executors.py").write_text(textwrap.dedent(CRASH_EXECUTORS))
    info = site / "deepseek_crashtest-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-crashtest\nVersion: 0.1\n"
                                   "Requires-Dist: deepseek-enterprise\n")
    (info / "entry_points.txt").write_text("[deepseek]\ncrashtest = deepseek_crashtest\n")
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def _crash(srv: ServerProcess) -> None:
    """Wait for the server to kill itself inside the executor's start."""
    try:
        assert srv.proc.wait(timeout=180) == -signal.SIGKILL, srv.proc.stderr.read()
    finally:
        srv.kill()


def _about(target: str, job_id: int) -> bool:
    """Whether an audit entry's target is the job (``job 3``, a submit's ``job 3 (train)``)."""
    return target == f"job {job_id}" or target.startswith(f"job {job_id} ")


def _left(url: str, job_id: int) -> tuple[str, int, str | None, list[str]]:
    """The job's state, attempts and pid_start as the killed server left them, and its audit actions."""
    store = Store(url)
    try:
        with store.session() as s:
            job = s.get(Job, job_id)
            actions = [a for a, t in s.execute(select(AuditEntry.action, AuditEntry.target).order_by(AuditEntry.id))
                       if _about(t, job_id)]
            return job.state, job.attempts, job.pid_start, actions
    finally:
        store.engine.dispose()


def _until_final(srv: ServerProcess, tok: str, job_id: int, timeout: float = 300) -> dict:
    end = time.monotonic() + timeout
    while True:
        job = srv.call("GET", f"/v1/tenants/acme/jobs/{job_id}", tok).json()
        if job["state"] in ("succeeded", "failed", "cancelled", "lost"):
            return job
        assert time.monotonic() < end, job
        time.sleep(0.3)


def _restart_until_final(root: Path, tok: str, job_id: int, admin: str, *args: str,
                         db_url: str | None = None) -> tuple[dict, list[tuple[str, str]]]:
    """Restart the server on ``root`` (one slot), wait for the job to end; the job and its audit
    (action, result), oldest first."""
    again = ServerProcess(root, "--slots", "1", *args, db_url=db_url, new=False)
    try:
        job = _until_final(again, tok, job_id)
        audit = [(e["action"], e["result"]) for e in reversed(
            again.call("GET", "/v1/audit?tenant=acme&limit=100", admin).json()) if _about(e["target"], job_id)]
    finally:
        again.kill()
    return job, audit


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_server_killed_while_starting_a_job_runs_it_exactly_once(backend: str, when: str, tmp_path: Path,
                                                                   crash_env: dict[str, str]) -> None:
    root = tmp_path / "srv"
    with database(backend, root) as url:
        srv = ServerProcess(root, "--slots", "1", "--executor", f"crash-{when}", db_url=url, env=crash_env)
        tok = srv.setup({"acme": {"running_jobs": 1}})["acme"]
        job_id = srv.call("POST", "/v1/tenants/acme/jobs", tok, json={"command": "train", "args": TINY_TRAIN}).json()["id"]
        _crash(srv)
        state, attempts, _ref, actions = _left(url, job_id)
        assert (state, attempts, actions) == ("starting", 0, ["job.submit", "job.starting"])
        job, audit = _restart_until_final(root, tok, job_id, srv.token, db_url=url)  # the local executor
    ws = Path(job["workspace"])
    log = (ws / "job.log").read_text()
    assert (job["state"], job["exit_code"], job["attempts"]) == ("succeeded", 0, 1), log[-2000:]
    assert len(list((ws / "runs").iterdir())) == 1  # deepseek train ran once: one run folder
    assert log.count("[deepseek server] isolation:") == 1  # one launch
    actions = [a for a, _ in audit]
    if when == "before":  # never launched: queued again in its place, then started once
        assert actions == ["job.submit", "job.starting", "job.requeue", "job.starting", "job.start", "job.succeeded"]
        assert audit[2][1] == ("the server stopped while starting it and it never started; back in its place, "
                               "not counted as an attempt")
    else:  # launched: found (alive, re-attached; or ended since) and never launched again
        alive = not audit[2][1].endswith(", ended since")
        assert actions == ["job.submit", "job.starting", "job.start", *(["job.reattach"] if alive else []),
                           "job.succeeded"], audit
        assert audit[2][1].startswith("found after a restart (the server stopped while starting it): pid ")


@pytest.mark.skipif(bool(SLURM_SKIP), reason=SLURM_SKIP)
def test_a_server_killed_right_after_sbatch_finds_the_slurm_job_by_its_name(tmp_path: Path,
                                                                           crash_env: dict[str, str]) -> None:
    root = tmp_path / "srv"
    srv = ServerProcess(root, "--slots", "1", "--executor", "slurm-crash-after", env=crash_env)
    tok = srv.setup({"acme": {"running_jobs": 1}})["acme"]
    job_id = srv.call("POST", "/v1/tenants/acme/jobs", tok, json={"command": "train", "args": TINY_TRAIN}).json()["id"]
    _crash(srv)
    url = f"sqlite:///{root}/service.db"
    state, _attempts, name, _actions = _left(url, job_id)
    assert state == "starting" and name is not None and name.startswith(f"deepseek-{job_id}-")
    listed = subprocess.run(["squeue", "--noheader", "--states=all", f"--name={name}", "--format=%i"],
                            capture_output=True, text=True, timeout=30, check=True).stdout.split()
    assert len(listed) == 1  # sbatch went through before the server died
    job, audit = _restart_until_final(root, tok, job_id, srv.token, "--executor", "slurm")
    ws = Path(job["workspace"])
    assert (job["state"], job["exit_code"], job["attempts"]) == ("succeeded", 0, 1), (ws / "job.log").read_text()[-2000:]
    assert len(list((ws / "runs").iterdir())) == 1
    assert [a for a, _ in audit if a != "job.reattach"] == ["job.submit", "job.starting", "job.start",
                                                            "job.succeeded"], audit  # re-attached if still running
    assert audit[2][1].startswith(f"found after a restart (the server stopped while starting it): pid {listed[0]}, ")
    with Store(url).session() as s:
        assert s.get(Job, job_id).pid_start == name  # the job kept the name it was submitted under


def _wait_gone(pid: int) -> None:
    end = time.monotonic() + 180
    while process_start(pid) is not None:
        assert time.monotonic() < end
        time.sleep(0.1)


def test_a_job_cannot_fake_its_exit_code_and_garbage_is_a_failure(tmp_path: Path) -> None:
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=2)
        bob = d.user("acme", "bob", "member")
        faker, garbled = (d.submit("acme", bob, args=["--set", "model.bogus=1", "--max-steps", "1"]).json()["id"]
                          for _ in range(2))
        Scheduler(d.store, LocalExecutor(d.root), slots=2, gpus=[]).step()
        with d.store.session() as s:
            pids = {j: (s.get(Job, j).pid, s.get(Job, j).workspace) for j in (faker, garbled)}
        for pid, _ws in pids.values():
            _wait_gone(pid)
        # what a hostile job (or a child it left behind) writes where the wrapper used to write
        (Path(pids[faker][1]) / "exit_code").write_text("0\n")
        state = d.root / "jobstate" / str(garbled)
        assert (state / "exit_code").read_text() == "2\n"
        (state / "exit_code").write_bytes(b"0\x00\xff")
        # a restarted server learns how they ended from the state folder alone
        Scheduler(d.store, LocalExecutor(d.root), slots=0, gpus=[]).recover()
        with d.store.session() as s:
            a, b = s.get(Job, faker), s.get(Job, garbled)
            assert (a.state, a.exit_code, a.message) == ("failed", 2, "exit code 2")
            assert (b.state, b.exit_code) == ("failed", None)
            assert b.message == f"the job's exit code cannot be trusted: {state}/exit_code is not text"
    finally:
        d.close()


def test_state_files_are_read_like_user_input(tmp_path: Path) -> None:
    state = jobstate.make(tmp_path, 4)
    assert jobstate.read_exit_code(state) is None and jobstate.read_started(state) is None
    for text, code in (("0\n", 0), ("75", 75), ("255\n", 255)):
        (state / "exit_code").write_text(text)
        assert jobstate.read_exit_code(state) == code
    for text in ("", "256\n", "-1\n", " 0\n", "0\n0\n", "0x0\n", "1" * 17, "٣\n"):
        (state / "exit_code").write_text(text)
        with pytest.raises(jobstate.Unreadable, match="exit_code"):
            jobstate.read_exit_code(state)
    (state / "exit_code").unlink()
    os.symlink("/etc/passwd", state / "exit_code")
    with pytest.raises(jobstate.Unreadable, match="a symbolic link"):
        jobstate.read_exit_code(state)
    (state / "exit_code").unlink()
    os.mkfifo(state / "exit_code")  # never blocks on a FIFO
    with pytest.raises(jobstate.Unreadable, match="not a regular file"):
        jobstate.read_exit_code(state)
    for text in ('{"pid": 1, "start": "99"}', '{"pid": -4, "start": "99", "slurm_job_id": null}',
                 '{"pid": 5, "start": "9; rm", "slurm_job_id": null}', '{"pid": true, "start": null, "slurm_job_id": null}',
                 "[]", "not json", '{"pid": 5, "start": "1", "slurm_job_id": 1e3}'):
        (state / "started").write_text(text)
        with pytest.raises(jobstate.Unreadable, match="started"):
            jobstate.read_started(state)
    (state / "started").write_text(jobstate.marker_text(12, "345", "678"))
    assert jobstate.read_started(state) == jobstate.Marker(12, "345", 678)
    assert jobstate.marker_text(12, "x", "6;7") == '{"pid": 12, "start": null, "slurm_job_id": null}'
    # the folder is the server's: a link in its place is refused
    os.symlink(tmp_path, tmp_path / "jobstate" / "5")
    with pytest.raises(OSError, match="not a folder of the server's"):
        jobstate.make(tmp_path, 5)
