"""The Slurm executor against a real cluster (CI: .ci/services/slurm.sh, a one-node cluster on
localhost): jobs submitted through the API run as sbatch jobs with the tenant's account, memory
and time limit, succeed or fail with their exit code and their log readable through the API; a
cancel ends a running job as cancelled and the Slurm job is gone; a restarted server re-attaches
a Slurm job that still runs. The parsers of Slurm's output, read like user input, and the checks
that need no cluster are in test_service_slurm_input.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from _servicehelpers import TINY_TRAIN, Deploy, deploy
from fastapi.testclient import TestClient
from sqlalchemy import select

from deepseek_enterprise.service import jobstate
from deepseek_enterprise.service.api import Service, create_app
from deepseek_enterprise.service.executor import UNREADABLE
from deepseek_enterprise.service.models import AuditEntry, Job
from deepseek_enterprise.service.scheduler import Scheduler
from deepseek_enterprise.service.slurm import SlurmExecutor
from deepseek_enterprise.service.store import Store


def _cluster() -> str:
    """Why the Slurm tests cannot run here ('' when they can)."""
    if not os.environ.get("DEEPSEEK_TEST_SLURM"):
        return "DEEPSEEK_TEST_SLURM is not set (.ci/services/slurm.sh starts a one-node cluster and sets it)"
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm's client commands (sinfo, sbatch) are not installed"
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if out.returncode != 0 or not {"idle", "mix", "alloc"} & set(out.stdout.split()):
        return f"no Slurm node is up (sinfo: {(out.stderr or out.stdout).strip()[:200]!r})"
    return ""


SKIP = _cluster()
slurm_cluster = pytest.mark.skipif(bool(SKIP), reason=SKIP)

LONG = [*TINY_TRAIN, "--max-steps", "100000", "--set", "checkpoint.interval=0", "--set", "train.eval_interval=0"]


def _deploy(root: Path, *, grace_s: float = 60.0) -> Deploy:
    """A server on ``root`` whose jobs go to Slurm (a pool of one device, for --gres)."""
    root.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{root}/service.db")
    token = store.bootstrap() or ""
    scheduler = Scheduler(store, SlurmExecutor(root, grace_s=grace_s, poll_s=0.3), slots=4, gpus=["0"],
                          interval=0.2)
    scheduler.start()
    client = TestClient(create_app(Service(store, root, scheduler=scheduler, pool_size=1)))
    return Deploy(root, store, client, token, scheduler)


def _slurm_id(d: Deploy, job_id: int) -> tuple[int, str]:
    with d.store.session() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.pid is not None
        return job.pid, job.pid_start or ""


def _show(slurm_id: int) -> dict[str, str]:
    out = subprocess.run(["scontrol", "--oneliner", "show", "job", str(slurm_id)], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return dict(re.findall(r"(?:^|\s)([A-Za-z/:]+)=(\S*)", out))


def _active(slurm_id: int) -> str:
    """The job's line in squeue's default listing (pending, running, completing ...), '' when none."""
    return subprocess.run(["squeue", "--noheader", f"--jobs={slurm_id}", "--format=%i %T"], capture_output=True,
                          text=True, timeout=30).stdout.strip()


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def _limit(pid: int, name: str) -> str:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if x.startswith(name))
    return line[len(name):].split()[0]


def _job_pids(workspace: Path) -> list[int]:
    """The job's processes running the deepseek wrapper or deepseek (from /proc: their cwd is the
    workspace)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(workspace) and b"-m" in cmd and (b"deepseek" in cmd or b"deepseek_enterprise.service.child" in cmd):
            pids.append(int(entry.name))
    return pids


@slurm_cluster
def test_slurm_jobs_succeed_fail_and_carry_the_tenant_limits(tmp_path: Path) -> None:
    d = _deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=3, devices=1, memory_bytes=8 << 30, cpu_seconds=600)
        d.tenant("huge", running_jobs=1, memory_bytes=1 << 50)
        d.tenant("tight", running_jobs=1, memory_bytes=128 << 20)
        bob = d.user("acme", "bob", "member")
        hugo = d.user("huge", "hugo", "member")
        tim = d.user("tight", "tim", "member")
        oom = d.submit("tight", tim, args=[*TINY_TRAIN, "--run-dir", "runs/oom"]).json()["id"]
        ok = d.submit("acme", bob, args=[*TINY_TRAIN, "--run-dir", "runs/tiny"]).json()["id"]
        bad = d.submit("acme", bob, args=["--set", "model.bogus=1", "--max-steps", "1"], devices=1).json()["id"]
        over = d.submit("huge", hugo, args=["--max-steps", "1"]).json()["id"]

        failed = d.wait("acme", bob, bad, {"succeeded", "failed", "lost"})
        assert failed["state"] == "failed" and failed["exit_code"] == 2, failed
        assert failed["message"] == "exit code 2"
        text = d.call("GET", f"/v1/tenants/acme/jobs/{bad}/logs", bob).json()["text"]
        assert "model.bogus: unknown key" in text
        slurm_bad, _ = _slurm_id(d, bad)
        assert f"[deepseek server] Slurm job {slurm_bad} ended FAILED, exit code 2" in text
        shown = _show(slurm_bad)
        assert shown["TresPerNode"] == "gres:gpu:1" and shown["ExitCode"] == "2:0"

        done = d.wait("acme", bob, ok, {"succeeded", "failed", "lost"}, timeout=300)
        text = d.call("GET", f"/v1/tenants/acme/jobs/{ok}/logs", bob).json()["text"]
        assert done["state"] == "succeeded" and done["exit_code"] == 0, text[-2000:]
        ws = Path(done["workspace"])
        assert ws == d.root / "tenants" / "acme" / "jobs" / str(ok)
        assert (ws / "runs" / "tiny" / "checkpoints").is_dir() and not (ws / "exit_code").exists()
        assert (d.root / "jobstate" / str(ok) / "exit_code").read_text() == "0\n"  # the wrapper's, server-owned
        slurm_ok, name = _slurm_id(d, ok)
        assert re.fullmatch(rf"deepseek-{ok}-[0-9a-f]{{8}}", name)
        assert f"Slurm job {slurm_ok} ended COMPLETED, exit code 0" in text
        shown = _show(slurm_ok)
        assert shown["JobName"] == name and shown["Account"] == "acme" and shown["JobState"] == "COMPLETED"
        assert shown["MinMemoryNode"] == "8G" and shown["TimeLimit"] == "00:10:00"
        assert shown["WorkDir"] == str(ws) and shown["StdOut"] == str(ws / "job.log")
        assert shown["Requeue"] == "0" and shown.get("TresPerNode", "") == ""

        # more memory than any node has: sbatch refuses, the job fails to start with Slurm's reason
        refused = d.wait("huge", hugo, over, {"succeeded", "failed", "lost"})
        assert refused["state"] == "failed" and refused["exit_code"] is None
        assert refused["message"].startswith("could not start: sbatch refused the job: sbatch: error:"), refused
        # over --mem: Slurm kills the job (OverMemoryKill on the CI cluster), the message says so
        killed = d.wait("tight", tim, oom, {"succeeded", "failed", "lost"}, timeout=300)
        assert killed["state"] == "failed" and killed["exit_code"] == 137, killed
        assert re.fullmatch(r"out of memory: Slurm killed the job at \d+ MiB, over its --mem of 128 MiB "
                            r"\(quota memory-bytes\) \(exit code 137\)", killed["message"]), killed["message"]
        with d.store.session() as s:
            starts = s.scalars(select(AuditEntry).where(AuditEntry.action == "job.start")).all()
            assert any(f"Slurm job {slurm_ok} (--account=acme --mem=8192M --time=10)" in e.result for e in starts)
    finally:
        d.close()


@slurm_cluster
def test_slurm_job_scrubbed_reattached_after_restart_then_cancelled(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DS_SERVER_SECRET", "hunter2")
    monkeypatch.setenv("DEEPSEEK_DB_URL", "postgresql://admin:pw@db/service")
    root = tmp_path / "srv"
    d = _deploy(root, grace_s=60)
    try:
        d.tenant("acme", running_jobs=2, memory_bytes=8 << 30, cpu_seconds=900)
        bob = d.user("acme", "bob", "member")
        long = d.submit("acme", bob, args=[*LONG, "--run-dir", "runs/long"]).json()["id"]
        job = d.wait("acme", bob, long, {"running", "failed"})
        assert job["state"] == "running", job
        slurm_id, name = _slurm_id(d, long)
        ws = Path(job["workspace"])
        deadline = time.monotonic() + 120
        while len(pids := _job_pids(ws)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(pids) == 2, pids  # the wrapper and deepseek, in the workspace
        for pid in pids:
            env = _environ(pid)
            assert "DS_SERVER_SECRET" not in env and "DEEPSEEK_DB_URL" not in env
            assert not any("hunter2" in v or "postgresql" in v for v in env.values())
            assert env["HOME"] == str(ws) and env["TMPDIR"] == str(ws / "tmp") and env["CUDA_VISIBLE_DEVICES"] == ""
            assert env["SLURM_JOB_ID"] == str(slurm_id) and env["SLURM_JOB_ACCOUNT"] == "acme"
            assert env["DEEPSEEK_JOB_ID"] == str(long)
            assert _limit(pid, "Max address space") == "unlimited"  # memory is --mem's, not RLIMIT_AS
            assert _limit(pid, "Max cpu time") == "900"
        assert _show(slurm_id)["JobState"] == "RUNNING"
    finally:
        d.close()  # the server stops; the Slurm job runs on

    again = _deploy(root, grace_s=60)
    try:
        assert _active(slurm_id) == f"{slurm_id} RUNNING"
        job = again.call("GET", f"/v1/tenants/acme/jobs/{long}", bob).json()
        assert job["state"] == "running"
        with again.store.session() as s:
            reattached = s.scalars(select(AuditEntry).where(AuditEntry.action == "job.reattach")).all()
            assert [e.target for e in reattached] == [f"job {long}"]
        deadline = time.monotonic() + 120  # training under way: its SIGTERM handler is installed
        while not (ws / "runs" / "long" / "metrics.jsonl").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        r = again.call("POST", f"/v1/tenants/acme/jobs/{long}/cancel", bob)
        assert r.status_code == 200, r.text
        job = again.wait("acme", bob, long, {"cancelled", "failed", "succeeded", "lost"}, timeout=180)
        text = again.call("GET", f"/v1/tenants/acme/jobs/{long}/logs", bob).json()["text"]
        assert job["state"] == "cancelled" and job["exit_code"] == 75, text[-2000:]  # checkpoint, then 75
        assert list((ws / "runs" / "long" / "checkpoints").glob("step-*"))
        assert _active(slurm_id) == ""  # the Slurm job is gone
        assert _show(slurm_id)["JobState"] in {"FAILED", "CANCELLED"}
        assert f"Slurm job {slurm_id} ended" in text
    finally:
        again.close()


@slurm_cluster
def test_a_slurm_id_is_the_job_only_under_its_name(tmp_path: Path) -> None:
    """A Slurm job of the same id but another name (an id reused, or not ours) is never signalled
    nor taken for the job; a job Slurm does not know is concluded from exit_code, else lost."""
    ex = SlurmExecutor(tmp_path, grace_s=1, poll_s=0)
    other = subprocess.run(["sbatch", "--parsable", "--job-name=not-deepseek", f"--output={tmp_path}/other.log",
                            "--wrap", "sleep 60"], capture_output=True, text=True, timeout=30, check=True)
    other_id = int(other.stdout.strip().split(";")[0])
    ws = tmp_path / "ws"
    ws.mkdir()
    try:
        deadline = time.monotonic() + 60
        while _active(other_id) != f"{other_id} RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        posing = "deepseek-7-0123abcd"
        ex.terminate(other_id, posing)
        ex.kill(other_id, posing)
        time.sleep(1)
        assert _active(other_id) == f"{other_id} RUNNING"  # untouched
        assert ex.finished(7, other_id, posing, ws) is False  # not ours, and no exit_code: lost
        (ws / "exit_code").write_text("0\n")  # the job's own folder is not where the code is read
        assert ex.finished(7, other_id, posing, ws) is False
        state = jobstate.make(tmp_path, 7)
        (state / "exit_code").write_text("3\n")
        assert ex.finished(7, other_id, posing, ws) == 3
        assert ex.finished(7, 99_999_999, posing, ws) == 3  # unknown to Slurm: from exit_code
        (state / "exit_code").write_text("three\n")  # garbage: failed, saying why
        assert ex.finished(7, 99_999_999, posing, ws) == UNREADABLE
        assert ex.reason(7, ws) == (f"the job's exit code cannot be trusted: {state}/exit_code holds 'three\\n', "
                                    "not an exit code (0-255)")
        (state / "exit_code").unlink()
        assert ex.finished(7, other_id, "not a deepseek name", ws) is False
    finally:
        subprocess.run(["scancel", str(other_id)], timeout=30, check=False)


@slurm_cluster
def test_a_job_cancelled_in_slurm_before_it_ran_is_not_a_success(tmp_path: Path) -> None:
    """A pending job cancelled in Slurm (an operator's scancel; a deadline) ends CANCELLED with
    Slurm's ExitCode 0:0 and no exit_code of its wrapper: it never ran, so it must not read as 0."""
    ex = SlurmExecutor(tmp_path, grace_s=1, poll_s=0)
    name = "deepseek-9-0123abcd"
    held = subprocess.run(["sbatch", "--parsable", "--hold", f"--job-name={name}", f"--output={tmp_path}/held.log",
                           "--wrap", "sleep 60"], capture_output=True, text=True, timeout=30, check=True)
    slurm_id = int(held.stdout.strip().split(";")[0])
    ws = tmp_path / "ws"
    ws.mkdir()
    try:
        assert ex.finished(9, slurm_id, name, ws) is None  # pending: not ended
        subprocess.run(["scancel", str(slurm_id)], timeout=30, check=True)
        deadline = time.monotonic() + 30
        while (code := ex.finished(9, slurm_id, name, ws)) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _show(slurm_id)["ExitCode"] == "0:0"
        assert code == 1 and ex.reason(9, ws) == "cancelled in Slurm (scancel)"
    finally:
        subprocess.run(["scancel", str(slurm_id)], timeout=30, check=False)


@slurm_cluster
def test_queued_jobs_wait_while_the_controller_does_not_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch and squeue both failing (the controller is down: Slurm's own clients pointed at a
    port where no slurmctld listens) leave every queued job queued, not failed; once Slurm answers
    again the first one is submitted."""
    down = tmp_path / "down.conf"
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")).read_text()
    down.write_text("".join(line + "\n" for line in conf.splitlines()
                            if not line.startswith(("SlurmctldPort", "MessageTimeout")))
                    + "SlurmctldPort=1\nMessageTimeout=2\n")
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=1)
        bob = d.user("acme", "bob", "member")
        ids = [d.submit("acme", bob, args=["--max-steps", "1"]).json()["id"] for _ in range(3)]
        sched = Scheduler(d.store, SlurmExecutor(d.root, poll_s=0, timeout_s=30), slots=1, gpus=[], retry_s=0)
        with monkeypatch.context() as m:
            m.setenv("SLURM_CONF", str(down))
            sched.step()
        with d.store.session() as s:
            assert [(s.get(Job, i).state, s.get(Job, i).message) for i in ids] == [("queued", "")] * 3
        sched.step()  # Slurm answers again
        with d.store.session() as s:
            first = s.get(Job, ids[0])
            assert first.state == "running" and first.pid is not None, first.message
            assert [s.get(Job, i).state for i in ids[1:]] == ["queued", "queued"]
        subprocess.run(["scancel", str(first.pid)], timeout=30, check=False)
    finally:
        d.close()


@slurm_cluster
def test_a_fifo_for_job_log_never_stops_the_scheduler(tmp_path: Path) -> None:
    """A job that ends non-zero after putting a FIFO where its job.log was: finished() reads the
    log's tail for slurmstepd's memory line and appends a note there; neither may wait on the
    FIFO (the scheduler's one thread would stop for every tenant)."""
    import threading

    ex = SlurmExecutor(tmp_path, grace_s=1, poll_s=0)
    name = "deepseek-12-0123abcd"
    ws = tmp_path / "ws"
    ws.mkdir()
    os.mkfifo(ws / "job.log")
    done = subprocess.run(["sbatch", "--parsable", f"--job-name={name}", f"--output={tmp_path}/real.log",
                           "--wrap", "exit 3"], capture_output=True, text=True, timeout=30, check=True)
    slurm_id = int(done.stdout.strip().split(";")[0])
    try:
        codes: list[object] = []
        deadline = time.monotonic() + 60

        def follow() -> None:
            while time.monotonic() < deadline:
                code = ex.finished(12, slurm_id, name, ws)
                if code is not None:
                    codes.append(code)
                    return
                time.sleep(0.2)

        worker = threading.Thread(target=follow, daemon=True)
        worker.start()
        worker.join(90)
        if worker.is_alive():
            fd = os.open(ws / "job.log", os.O_RDWR)  # free the blocked thread
            worker.join(10)
            os.close(fd)
            pytest.fail("finished() blocked on the FIFO job.log")
        assert codes == [3]
    finally:
        subprocess.run(["scancel", str(slurm_id)], timeout=30, check=False)
