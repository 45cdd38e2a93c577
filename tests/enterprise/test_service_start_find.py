"""How the executors find a start after a restart (the crash tests themselves are in
test_service_start_window.py, the scheduler's rules for a ``starting`` job in
test_service_start_rules.py).

The local executor finds a launch by its lock and its start marker and takes only the wrapper of
the job's own state folder for a handle; the Slurm executor finds it by its lock, the reserved job
name and the marker (on the CI cluster); a FIFO or link for a launch lock never blocks the
scheduler; a found start counts its device-hours from its ``starting`` commit.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _servicehelpers import deploy
from sqlalchemy import select
from test_service_reliability import Scripted
from test_service_slurm import SKIP as SLURM_SKIP

from deepseek_enterprise.service import jobstate, quotas
from deepseek_enterprise.service.executor import (
    Launch,
    LocalExecutor,
    Started,
    Unavailable,
    process_start,
)
from deepseek_enterprise.service.models import DeviceUse, Job, aware, utcnow
from deepseek_enterprise.service.scheduler import Scheduler


def test_the_local_executor_finds_a_start_by_its_lock_and_marker(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path)
    launch = Launch(3, "acme", "train", [], None, {}, [])
    state = jobstate.make(tmp_path, 3)
    assert ex.find(launch) is None  # nothing: never launched
    fd = jobstate.lock(state)  # a launch holds the lock ...
    try:
        with pytest.raises(OSError, match="still holds"):
            jobstate.lock(state)  # ... so no second one starts
        with pytest.raises(Unavailable, match="has not written its start marker yet"):
            ex.find(launch)
        me = os.getpid()  # a live process, but not the job's wrapper: not taken for it
        (state / "started").write_text(jobstate.marker_text(me, process_start(me), None))
        with pytest.raises(Unavailable, match=f"pid {me} that its marker names is not its wrapper"):
            ex.find(launch)
        # a stand-in with the wrapper's command line for this state folder, in a session of its own
        stand_in = _sleeper("-m", "deepseek_enterprise.service.child", "--state", str(state))
        try:
            (state / "started").write_text(jobstate.marker_text(stand_in.pid, process_start(stand_in.pid), None))
            found = ex.find(launch)
            assert found is not None and (found.pid, found.pid_start) == (stand_in.pid, process_start(stand_in.pid))
            assert ex.find(Launch(4, "acme", "train", [], None, {}, [])) is None  # another job: its own folder
        finally:
            stand_in.kill()
            stand_in.wait()
        (state / "started").write_text("garbage")
        with pytest.raises(Unavailable, match="is not the wrapper's start marker"):
            ex.find(launch)  # alive but unidentified: wait for it to let go
    finally:
        os.close(fd)
    found = ex.find(launch)  # the lock free: it ran and ended; its exit code decides
    assert found is not None and found.pid is None
    assert ex.finished(3, None, None, found.workspace) is False  # no exit code: lost
    jobstate.clear(state)
    assert ex.find(launch) is None


@pytest.mark.skipif(bool(SLURM_SKIP), reason=SLURM_SKIP)
def test_the_slurm_executor_finds_a_start_by_its_lock_name_and_marker(tmp_path: Path) -> None:
    from deepseek_enterprise.service.slurm import SlurmExecutor

    ex = SlurmExecutor(tmp_path, poll_s=0)
    name = ex.reserve(8)
    assert name.startswith("deepseek-8-") and len(name) == len("deepseek-8-") + 8
    launch = Launch(8, "acme", "train", [], None, {}, [], ref=name)
    state = jobstate.folder(tmp_path, 8)
    fd = jobstate.lock(state)  # an sbatch still submitting
    try:
        with pytest.raises(Unavailable, match="its sbatch is still submitting"):
            ex.find(launch)
    finally:
        os.close(fd)
    assert ex.find(launch) is None  # Slurm lists nothing under the name, no marker: never submitted
    assert ex.find(Launch(8, "acme", "train", [], None, {}, [], ref="deepseek-9-0123abcd")) is None  # not its name
    (state / "started").write_text(jobstate.marker_text(4321, "1", "77"))  # it ran; Slurm forgot it
    found = ex.find(launch)
    assert found is not None and (found.pid, found.pid_start) == (77, name)
    (state / "exit_code").write_text("5\n")
    assert ex.finished(8, found.pid, found.pid_start, found.workspace) == 5  # Slurm does not list 77 as ours
    held = subprocess.run(["sbatch", "--parsable", "--hold", f"--job-name={name}", f"--output={tmp_path}/held.log",
                           "--wrap", "sleep 60"], capture_output=True, text=True, timeout=30, check=True)
    slurm_id = int(held.stdout.strip().split(";")[0])
    try:
        found = ex.find(launch)  # listed under its name: that is the job
        assert found is not None and (found.pid, found.pid_start) == (slurm_id, name)
    finally:
        subprocess.run(["scancel", str(slurm_id)], timeout=30, check=False)


def _within(seconds: float, fn, unblock: Path):  # noqa: ANN001, ANN202
    """``fn()``'s result, failing (and freeing the thread by opening ``unblock``, a FIFO, for
    writing) when it has not returned within ``seconds``: a FIFO must never be waited on."""
    out: list = []

    def call() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # raised again in the test's thread
            out.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        fd = os.open(unblock, os.O_RDWR)  # lets a blocked open of the FIFO return
        worker.join(10)
        os.close(fd)
        pytest.fail(f"blocked on the FIFO {unblock}")
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def test_a_fifo_or_link_for_a_launch_lock_never_stops_the_scheduler(tmp_path: Path) -> None:
    """A starting job whose launch.lock is a FIFO (what a hostile job of the server's user could
    put there) stays starting; recover() returns at once and the server answers; a start of it
    is refused with one line instead of launching."""
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=2)
        bob = d.user("acme", "bob", "member")
        job_id = d.submit("acme", bob).json()["id"]
        with d.store.session() as s:
            s.get(Job, job_id).move("starting")
        state = jobstate.make(d.root, job_id)
        os.mkfifo(state / jobstate.LOCK)
        _within(20, Scheduler(d.store, LocalExecutor(d.root), slots=2, gpus=[]).recover, state / jobstate.LOCK)
        with d.store.session() as s:
            assert s.get(Job, job_id).state == "starting"
        with pytest.raises(OSError, match="launch.lock is not a regular file"):
            _within(20, lambda: jobstate.held(state), state / jobstate.LOCK)
        with pytest.raises(OSError, match="launch.lock is not a regular file"):
            _within(20, lambda: jobstate.lock(state), state / jobstate.LOCK)
        (state / jobstate.LOCK).unlink()
        os.symlink(tmp_path / "elsewhere", state / jobstate.LOCK)
        with pytest.raises(OSError):
            jobstate.held(state)
        assert not (tmp_path / "elsewhere").exists()
    finally:
        d.close()


def test_a_start_found_after_a_restart_counts_its_device_hours_from_its_starting_commit(tmp_path: Path) -> None:
    """A device job the killed server left starting two hours ago and that ran (and ended) while
    it was down: its run counts from the starting commit, not from the restart (it counted 0)."""
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=1, devices=1)
        bob = d.user("acme", "bob", "member")
        job_id = d.submit("acme", bob).json()["id"]
        with d.store.session() as s:
            job = s.get(Job, job_id)
            job.devices = 1
            job.move("starting", gpus="0")
            assert job.started_at is not None  # device-hours count from the starting commit ...
            job.started_at = utcnow() - dt.timedelta(hours=2)  # ... made two hours before the restart
            tenant = job.tenant
            assert quotas.device_hours_used(s, tenant.id, 30, utcnow()) == pytest.approx(2, abs=0.01)

        class Ended(Scripted):
            def find(self, launch: Launch) -> Started | None:
                return Started(None, None, d.root / "ws", "launched before the server stopped, ended since")

        ex = Ended(d.root)
        ex.codes[job_id] = 0
        Scheduler(d.store, ex, slots=1, gpus=["0"]).recover()
        with d.store.session() as s:
            job = s.get(Job, job_id)
            assert (job.state, job.attempts) == ("succeeded", 1)
            use = s.scalars(select(DeviceUse).where(DeviceUse.job_id == job_id)).one()
            hours = (aware(use.ended_at) - aware(use.started_at)).total_seconds() / 3600
            assert hours == pytest.approx(2, abs=0.01)
            assert quotas.device_hours_used(s, job.tenant_id, 30, utcnow()) == pytest.approx(2, abs=0.01)
        other_id = d.submit("acme", bob).json()["id"]
        with d.store.session() as s:  # a job that never ran shows no start
            other = s.get(Job, other_id)
            other.move("starting")
            other.move("failed", message="could not start: test")
            assert other.started_at is None
    finally:
        d.close()


def _sleeper(*extra: str, session: bool = True) -> subprocess.Popen[bytes]:
    """A process that sleeps, with ``extra`` at the end of its command line, returned once
    ``/proc`` shows that command line: Popen returns when the exec has closed its error pipe,
    which the kernel does before it sets up the new program's arguments, so a read of
    ``/proc/PID/cmdline`` right after Popen can still find it empty."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *extra], start_new_session=session)
    deadline = time.monotonic() + 30
    while True:
        try:
            with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                if f.read().split(b"\0")[1:3] == [b"-c", b"import time; time.sleep(60)"]:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"the sleeper {proc.pid} never showed its command line")
        time.sleep(0.01)


def test_the_local_executor_takes_only_the_wrapper_of_the_jobs_own_folder_for_a_handle(tmp_path: Path) -> None:
    """Each of the checks alone refuses a process: not a session leader, another command line,
    the wrapper of another job's folder; and once the lock is free a marker names no handle even
    when that process still lives (a recycled pid). reserve() forgets an earlier launch's files."""
    ex = LocalExecutor(tmp_path)
    launch = Launch(3, "acme", "train", [], None, {}, [])
    state = jobstate.make(tmp_path, 3)
    wrapper_argv = ("-m", "deepseek_enterprise.service.child", "--state")
    procs = {"not a session leader": _sleeper(*wrapper_argv, str(state), session=False),
             "another command line": _sleeper("-m", "deepseek_enterprise.service.chil", "--state", str(state)),
             "another job's wrapper": _sleeper(*wrapper_argv, str(jobstate.folder(tmp_path, 33))),
             "its wrapper": _sleeper(*wrapper_argv, str(state))}
    try:
        fd = jobstate.lock(state)
        try:
            for why, proc in procs.items():
                (state / "started").write_text(jobstate.marker_text(proc.pid, process_start(proc.pid), None))
                if why == "its wrapper":
                    found = ex.find(launch)
                    assert found is not None and found.pid == proc.pid, why
                else:
                    with pytest.raises(Unavailable, match=f"pid {proc.pid} that its marker names is not its wrapper"):
                        ex.find(launch)
        finally:
            os.close(fd)
        found = ex.find(launch)  # lock free: that launch ended; the live pid is no handle
        assert found is not None and (found.pid, found.pid_start) == (None, None)
        assert found.isolation.endswith(", ended since")
        (state / "exit_code").write_text("0\n")
        assert ex.reserve(3) == ""  # a new start: the earlier launch's files are gone
        assert sorted(p.name for p in state.iterdir()) == [jobstate.LOCK]
        assert ex.find(launch) is None
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
