"""A job left ``running`` across a reboot is never re-attached: the wrapper records the machine's
boot id in its ``started`` marker, and a restarted server that finds another boot's id there
treats the job as ended with the reboot (its recorded exit code decides, else it fails saying
so), even when an unrelated process now has the same pid and start time. Real processes and the
real ``/proc``; the "earlier boot" is a marker carrying another valid boot id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from _servicehelpers import deploy
from sqlalchemy import select

from deepseek_enterprise.service import jobstate
from deepseek_enterprise.service.executor import LocalExecutor, process_start
from deepseek_enterprise.service.models import AuditEntry, Job
from deepseek_enterprise.service.scheduler import Scheduler

THIS_BOOT = jobstate.boot_id()
pytestmark = pytest.mark.skipif(THIS_BOOT is None, reason="this kernel has no /proc/sys/kernel/random/boot_id")


def _other_boot() -> str:
    other = str(uuid.uuid4())
    assert other != THIS_BOOT
    return other


def test_the_boot_id_is_read_back_like_user_input(tmp_path: Path) -> None:
    assert THIS_BOOT is not None and len(THIS_BOOT) == 36
    assert THIS_BOOT == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    state = jobstate.make(tmp_path, 1)
    (state / "started").write_text(jobstate.marker_text(12, "345", None, THIS_BOOT))
    assert jobstate.read_started(state) == jobstate.Marker(12, "345", None, THIS_BOOT)
    assert jobstate.marker_text(12, "345", None, "../../etc") == '{"pid": 12, "start": "345", "slurm_job_id": null}'
    # an older wrapper's marker (no boot id) is still read
    (state / "started").write_text('{"pid": 12, "start": "345", "slurm_job_id": null}')
    assert jobstate.read_started(state) == jobstate.Marker(12, "345", None, None)
    for bad in ('"not-a-boot-id"', '"' + THIS_BOOT.upper() + '"', '"' + THIS_BOOT[:-1] + 'g"', '"' + THIS_BOOT + '\\n"',
                '"' + THIS_BOOT.replace("-", "") + '"', "5", "[]", "true", '"' + "a" * 300 + '"'):
        (state / "started").write_text('{"pid": 12, "start": "345", "slurm_job_id": null, "boot_id": ' + bad + "}")
        with pytest.raises(jobstate.Unreadable) as err:
            jobstate.read_started(state)
        assert "\n" not in str(err.value)
        assert "boot_id" in str(err.value) or "never writes" in str(err.value) or "is not the wrapper's" in str(err.value)
    (state / "started").write_text('{"pid": 12, "start": "345", "slurm_job_id": null, "boot_id": "nope"}')
    with pytest.raises(jobstate.Unreadable, match=r"started: boot_id 'nope' is not a boot id \(a 36-character"):
        jobstate.read_started(state)
    (state / "started").write_text('{"pid": 12, "start": "345", "slurm_job_id": null, "boot": null}')
    with pytest.raises(jobstate.Unreadable, match="is not the wrapper's start marker"):
        jobstate.read_started(state)
    # the rule itself: another boot is never alive, whatever /proc says now
    me, mine = os.getpid(), process_start(os.getpid())
    assert jobstate.alive(me, mine, THIS_BOOT, THIS_BOOT) and jobstate.alive(me, mine)
    assert jobstate.alive(me, mine, None, THIS_BOOT)  # an older marker: pid and start time
    assert not jobstate.alive(me, mine, _other_boot(), THIS_BOOT)
    assert not jobstate.alive(me, str(int(mine) + 1), THIS_BOOT, THIS_BOOT) and not jobstate.alive(None, mine)


def test_the_wrapper_records_this_boot(tmp_path: Path) -> None:
    state = jobstate.make(tmp_path, 3)
    done = subprocess.run([sys.executable, "-I", "-m", "deepseek_enterprise.service.child", "--state", str(state),
                           "--version"], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    marker = jobstate.read_started(state)
    assert marker is not None and marker.boot_id == THIS_BOOT and marker.start is not None
    assert jobstate.read_exit_code(state) == 0


def test_a_restart_after_a_reboot_does_not_reattach(tmp_path: Path) -> None:
    d = deploy(tmp_path / "srv")
    d.tenant("acme")
    bob = d.user("acme", "bob", "member")
    ids = [d.submit("acme", bob).json()["id"] for _ in range(5)]
    # one live process stands in for all five wrappers: the same pid and start time that a job of
    # the earlier boot recorded, as an unrelated process can have after a reboot
    stand_in = subprocess.Popen(["sleep", "120"], start_new_session=True)
    start = process_start(stand_in.pid)
    assert start is not None
    other = _other_boot()
    markers = {
        ids[0]: jobstate.marker_text(stand_in.pid, start, None, other),  # earlier boot, no exit code
        ids[1]: jobstate.marker_text(stand_in.pid, start, None, other),  # earlier boot, ended with code 0
        ids[2]: json.dumps({"pid": stand_in.pid, "start": start, "slurm_job_id": None, "boot_id": "x" * 36}),
        ids[3]: jobstate.marker_text(stand_in.pid, start, None, THIS_BOOT),  # this boot, alive
        ids[4]: jobstate.marker_text(stand_in.pid, start, None),  # an older marker: as before boot ids
    }
    try:
        with d.store.session() as s:
            for job_id, text in markers.items():
                job = s.get(Job, job_id)
                job.move("starting")
                job.move("running", pid=stand_in.pid, pid_start=start, workspace=str(tmp_path / f"ws{job_id}"))
                Path(job.workspace).mkdir()
                jobstate.write(jobstate.make(d.root, job_id), jobstate.STARTED, text)
        jobstate.write(jobstate.folder(d.root, ids[1]), jobstate.EXIT_CODE, "0\n")
        d.close()
        again = deploy(tmp_path / "srv")
        sched = Scheduler(again.store, LocalExecutor(again.root), slots=0, gpus=[])
        sched.recover()
        with again.store.session() as s:
            got = {i: (s.get(Job, i).state, s.get(Job, i).exit_code, s.get(Job, i).message) for i in ids}
            audit = [(e.action, e.target, e.result) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))
                     if e.actor == "scheduler"]
        assert got[ids[0]] == ("failed", None, f"the machine rebooted while the job ran (boot id {other} at its start, "
                                               f"{THIS_BOOT} now): it ended with the reboot")
        assert got[ids[1]] == ("succeeded", 0, "")
        state2 = jobstate.folder(again.root, ids[2])
        assert got[ids[2]] == ("failed", None, "not re-attached after the server's restart: its start marker cannot be "
                                               f"trusted: {state2 / 'started'}: boot_id '{'x' * 36}' is not a boot id "
                                               "(a 36-character lower-case UUID, as in /proc/sys/kernel/random/boot_id)")
        assert got[ids[3]][0] == "running" and got[ids[4]][0] == "running"
        assert ("job.reattach", f"job {ids[3]}", f"pid {stand_in.pid} still running") in audit
        assert ("job.failed", f"job {ids[0]}", got[ids[0]][2]) in audit
        assert stand_in.poll() is None  # nothing was signalled: the unrelated process runs on
        sched.step()  # followed by pid and start time from here on, its marker not read again
        jobstate.write(jobstate.folder(again.root, ids[3]), jobstate.STARTED, "garbage")
        sched.step()
        with again.store.session() as s:
            assert [s.get(Job, i).state for i in ids[3:]] == ["running", "running"]
        stand_in.kill()
        stand_in.wait()
        sched.step()
        with again.store.session() as s:
            assert [s.get(Job, i).state for i in ids[3:]] == ["lost", "lost"]
        again.close()
    finally:
        if stand_in.poll() is None:
            stand_in.kill()
            stand_in.wait()
