"""The local executor's host limits and GPU sharing (issue 17): cgroup v2 where writable (the
real path runs only where the kernel offers it), the fallback to rlimits and its reason, a job
over ``memory-bytes`` failing as out of memory, the GPU sharing rules of the scheduler, the
environment and entry point a shared job gets, and the CUDA memory cap (CUDA only)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _servicehelpers import TINY_TRAIN, deploy
from test_service_executor import Recording

from deepseek.errors import UsageError
from deepseek_enterprise.service import cgroups, child, gpushare
from deepseek_enterprise.service.executor import LocalExecutor
from deepseek_enterprise.service.models import Job
from deepseek_enterprise.service.scheduler import Scheduler
from deepseek_enterprise.service.slurm import SlurmExecutor

BIG_MODEL = ["--set", "model.vocab_size=40000000"]
"""A tiny GPT whose embedding alone asks 5.1 GB (40M x 32 fp32)."""


# -- GPU sharing rules -------------------------------------------------------------------------

def test_gpu_loads_and_assignment() -> None:
    pool = ["0", "1", "2"]
    load = gpushare.loads(pool, [("0", 0.4), ("0", 0.4), ("1", None), ("7", None), ("", 0.5)])
    assert load == pytest.approx({"0": 0.8, "1": 1.0, "2": 0.0})
    assert gpushare.available(pool, load, None) == ["2"]  # whole: only a GPU nothing runs on
    assert gpushare.available(pool, load, 0.2) == ["0", "2"]  # best fit: the fullest first
    assert gpushare.available(pool, load, 0.3) == ["2"]  # 0.8 + 0.3 > 1
    assert gpushare.assign(pool, load, 2, 0.2) == ["0", "2"]
    assert gpushare.assign(pool, load, 2, 0.3) is None and gpushare.assign(pool, load, 0, 0.3) == []
    thirds = gpushare.loads(["0"], [("0", 0.1), ("0", 0.2)])
    assert gpushare.available(["0"], thirds, 0.7) == ["0"]  # 0.1 + 0.2 + 0.7 fits despite floats
    for bad in ("0", "1.5", "nan", "inf", "abc", "", "-0.1"):
        with pytest.raises(ValueError, match="use a fraction in \\(0, 1\\]"):
            gpushare.check_fraction(bad, "DEEPSEEK_GPU_MEMORY_FRACTION")
    assert gpushare.check_fraction("1", "x") == 1.0


class Sharing(Recording):
    """A recording executor that caps GPU memory, as the local one does."""

    shares_gpus = True


def test_an_executor_that_cannot_cap_gpu_memory_gets_whole_gpus_whatever_the_quota(tmp_path: Path) -> None:
    """Slurm allocates whole GPUs and applies no cap: two sharing tenants' jobs never count as
    0.4 + 0.4 of one pool GPU there (the server would hand Slurm more GPU jobs than its pool)."""
    assert LocalExecutor.shares_gpus and not SlurmExecutor.shares_gpus
    d = deploy(tmp_path / "srv")
    d.client.app.state.service.pool_size = 1
    try:
        d.tenant("acme", devices=1, running_jobs=5, gpu_memory_fraction=0.4)
        d.tenant("globex", devices=1, running_jobs=5, gpu_memory_fraction=0.4)
        bob, gil = d.user("acme", "bob", "member"), d.user("globex", "gil", "member")
        a1 = d.submit("acme", bob, devices=1).json()["id"]
        g1 = d.submit("globex", gil, devices=1).json()["id"]
        ex = Recording(d.root)
        sched = Scheduler(d.store, ex, slots=8, gpus=["0"])
        sched.step()
        assert {j: (launch.gpus, launch.gpu_fraction) for j, launch in ex.launches.items()} == {a1: (["0"], None)}
        with d.store.session() as s:
            assert [s.get(Job, j).state for j in (a1, g1)] == ["running", "queued"]
            assert s.get(Job, a1).gpu_fraction is None and sched.gpu_loads(s) == {"0": 1.0}
        ex.codes[a1] = 0
        sched.step()
        assert (ex.launches[g1].gpus, ex.launches[g1].gpu_fraction) == (["0"], None)
    finally:
        d.close()


def test_the_scheduler_shares_a_gpu_only_where_quotas_allow_and_never_past_1(tmp_path: Path) -> None:
    d = deploy(tmp_path / "srv")
    d.client.app.state.service.pool_size = 1
    try:
        d.tenant("acme", devices=1, running_jobs=5, gpu_memory_fraction=0.4)
        d.tenant("globex", devices=1, running_jobs=5, gpu_memory_fraction=0.4)
        d.tenant("initech", devices=1, running_jobs=5)  # no sharing
        bob, gil, ian = d.user("acme", "bob", "member"), d.user("globex", "gil", "member"), \
            d.user("initech", "ian", "member")
        a1 = d.submit("acme", bob, devices=1).json()["id"]
        g1 = d.submit("globex", gil, devices=1).json()["id"]
        i1 = d.submit("initech", ian, devices=1).json()["id"]
        a2 = d.submit("acme", bob, devices=1).json()["id"]
        ex = Sharing(d.root)
        sched = Scheduler(d.store, ex, slots=8, gpus=["0"])
        sched.step()
        # acme and globex share GPU 0 (0.8); acme's second job would make 1.2; initech waits for a whole GPU
        assert {j: (ex.launches[j].gpus, ex.launches[j].gpu_fraction) for j in ex.launches} == \
            {a1: (["0"], 0.4), g1: (["0"], 0.4)}
        with d.store.session() as s:
            assert [s.get(Job, j).state for j in (a1, g1, i1, a2)] == ["running", "running", "queued", "queued"]
            assert s.get(Job, a1).gpu_fraction == 0.4 and sched.gpu_loads(s) == {"0": pytest.approx(0.8)}
        ex.codes[a1] = 0
        sched.step()  # initech's job is the oldest head but cannot share; acme's a2 (0.4) fits next to globex
        assert ex.launches[a2].gpus == ["0"] and i1 not in ex.launches
        ex.codes[g1] = ex.codes[a2] = 0
        sched.step()
        assert (ex.launches[i1].gpus, ex.launches[i1].gpu_fraction) == (["0"], None)
        a3 = d.submit("acme", bob, devices=1).json()["id"]
        sched.step()
        assert a3 not in ex.launches  # a whole GPU carries nothing else
        with d.store.session() as s:
            assert sched.gpu_loads(s) == {"0": 1.0} and s.get(Job, i1).gpu_fraction is None
        r = d.call("GET", "/v1/tenants/acme", d.admin).json()
        assert r["quota"]["gpu_memory_fraction"] == 0.4 and r["quota"]["cpus"] is None
        for bad in (0, 1.5, "x"):
            r = d.call("PUT", "/v1/tenants/acme/quota", d.admin, json={"gpu_memory_fraction": bad})
            assert r.status_code == 422 and "gpu_memory_fraction" in r.json()["detail"], r.text
    finally:
        d.close()


def test_a_shared_job_gets_the_cap_variable_and_the_capping_entry_point(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path)
    env = ex.environment(tmp_path, ["0"], 3, 0.4)
    assert env[gpushare.ENV] == "0.4" and env["CUDA_VISIBLE_DEVICES"] == "0"
    assert gpushare.ENV not in ex.environment(tmp_path, ["0"], 3)  # whole GPU: no cap
    assert gpushare.ENV not in ex.environment(tmp_path, [], 3, 0.4)  # no GPU: nothing to cap
    # the wrapper never imports torch itself
    probe = "import sys; import deepseek_enterprise.service.child; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True).stdout == "False\n"
    # with a cap the job runs under gpucap; a bad value is one line, exit 2
    for value, code, text in (("0.5", 0, "GPU memory cap 0.5 not applied: no CUDA device is visible"),
                              ("2", 2, "DEEPSEEK_GPU_MEMORY_FRACTION='2': use a fraction in (0, 1]")):
        ws, state = tmp_path / f"ws{value}", tmp_path / f"state{value}"
        ws.mkdir()
        state.mkdir()
        with open(ws / "job.log", "wb") as log:
            r = subprocess.run([sys.executable, "-I", "-m", "deepseek_enterprise.service.child", "--state", str(state),
                                "--version"],
                               cwd=ws, stdout=log, stderr=subprocess.STDOUT, timeout=300,
                               env={"PATH": os.environ["PATH"], gpushare.ENV: value, "CUDA_VISIBLE_DEVICES": ""})
        out = (ws / "job.log").read_text()
        assert r.returncode == code and text in out, out
        assert (state / "exit_code").read_text() == f"{code}\n" and (state / "exit_reason").read_text() == ""
        assert not (ws / "exit_code").exists()


def test_the_wrapper_explains_failures(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("step 1\nerror: out of memory (DefaultCPUAllocator: can't allocate memory: you tried to "
                   "allocate 5120000000 bytes); ask for less at once\n")
    assert child.explain(2, log, None).startswith("out of memory (DefaultCPUAllocator: can't allocate memory")
    assert child.explain(1, log, None) == ""  # not the OOM exit code
    log.write_text("error: out of memory (CUDA out of memory. Tried to allocate 2.00 GiB); ask for less\n")
    assert child.explain(2, log, "0.4") == ("out of GPU memory: the job's share is 0.4 of each GPU (quota "
                                            "gpu-memory-fraction) (CUDA out of memory. Tried to allocate 2.00 "
                                            "GiB); ask for less")
    log.write_text("error: --max-steps: must be positive\n")
    assert child.explain(2, log, None) == ""
    assert child.explain(128 + 24, log, None).startswith("CPU time limit reached")
    log.unlink()
    os.symlink("/etc/passwd", log)
    assert child.explain(2, log, None) == ""  # never follows a link


# -- host limits: which applies ------------------------------------------------------------------

def _fake_proc(tmp_path: Path, cgroup_dir: Path, own: str = "/") -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(f"4:memory:/x\n0::{own}\n")
    (proc / "mountinfo").write_text(
        f"30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        f"35 25 0:31 / {cgroup_dir} rw,relatime shared:9 - cgroup2 cgroup2 rw\n")
    return proc


def test_the_fallback_to_rlimits_and_its_reason(tmp_path: Path) -> None:
    assert cgroups.detect("none") == cgroups.Detection(None, "--cgroup none")
    fake = tmp_path / "cg"
    fake.mkdir()
    d = cgroups.detect("auto", proc=_fake_proc(tmp_path, fake))
    assert d.cgroups is None and d.reason.startswith(f"{fake} is not a cgroup v2 directory")
    (fake / "cgroup.controllers").write_text("hugetlb cpu\n")
    (tmp_path / "b").mkdir()
    d = cgroups.detect("auto", proc=_fake_proc(tmp_path / "b", fake))
    assert d.summary() == f"rlimits (cgroup v2 at {fake} offers cpu, hugetlb; memory needed)"
    # memory alone is enough (a container's delegation); pids and cpu are used only when offered
    (fake / "cgroup.controllers").write_text("memory hugetlb\n")
    (fake / "cgroup.subtree_control").write_text("\n")
    d = cgroups.detect(str(fake))
    assert d.cgroups == cgroups.Cgroups(fake, ("memory",)) and d.summary() == f"cgroup v2 under {fake} (memory)"
    assert d.cgroups.describe(7, 1 << 30, 2.0) == (
        f"cgroup v2 {fake}/job-7: memory.max=1073741824, cpu.max not available (no cpu controller), "
        "pids.max not available (no pids controller)")
    assert cgroups.Cgroups(fake, ("memory", "pids", "cpu")).describe(7, None, 2.0) == (
        f"cgroup v2 {fake}/job-7: memory.max=max, cpu.max=2 CPU(s), pids.max={cgroups.PIDS_MAX}")
    (tmp_path / "c").mkdir()
    assert cgroups.detect("auto", proc=tmp_path / "c").reason.startswith("cannot read")
    assert cgroups.cgroup2_mounts("35 25 0:31 / /a\\040b rw - cgroup2 cgroup2 rw\n") == [Path("/a b")]
    assert cgroups.own_cgroup("0::/system.slice/x.service\n") == "/system.slice/x.service"
    assert cgroups.own_cgroup("0::/../etc\n") is None and cgroups.own_cgroup("1:cpu:/\n") is None
    for spec, text in (("relative/dir", "give auto, none or an absolute cgroup v2 directory"),
                       ("/sys/../etc", "give auto, none or an absolute"),
                       (str(tmp_path / "no" / "x"), f"cannot create it: {tmp_path / 'no'} is not a cgroup v2")):
        with pytest.raises(UsageError, match=text.replace("(", "\\(")):
            cgroups.detect(spec)
    # this machine, as it is: say which applies
    real = cgroups.detect("auto")
    assert (real.cgroups is None) == bool(real.reason)


def test_the_server_refuses_an_unusable_cgroup_in_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "deepseek", "server", "--root", str(tmp_path / "srv"), "--cgroup",
                        str(tmp_path / "nope" / "x"), "--devices", "none"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "DEEPSEEK_DB_URL": ""})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [f"error: --cgroup {tmp_path / 'nope' / 'x'}: cannot create it: "
                                             f"{tmp_path / 'nope'} is not a cgroup v2 directory (No such file or "
                                             "directory)"]
    assert not (tmp_path / "srv").exists()


# -- how limits are applied ---------------------------------------------------------------------

def test_a_process_is_held_to_its_limits_before_it_runs_whatever_other_threads_hold(tmp_path: Path) -> None:
    """The server's API and scheduler are threads: code run between fork and exec (``preexec_fn``)
    may deadlock on what another thread held at the fork, and CPython forks for it only once it
    holds the interpreter's import lock, so a job's start waited for any thread holding that. The
    limits are applied by the new process itself before its program runs (``proclimits``)."""
    import _imp
    import threading

    from deepseek_enterprise.service import proclimits

    probe = ("import resource as r; "
             "print([r.getrlimit(k) for k in (r.RLIMIT_AS, r.RLIMIT_CPU, r.RLIMIT_CORE)])")
    held, release, started = threading.Event(), threading.Event(), []

    def hold() -> None:
        _imp.acquire_lock()
        try:
            held.set()
            release.wait(60)
        finally:
            _imp.release_lock()

    holder = threading.Thread(target=hold)
    starter = threading.Thread(target=lambda: started.append(proclimits.spawn(
        [sys.executable, "-I", "-S", "-c", probe], 3 << 30, 7, None, stdout=subprocess.PIPE, text=True)))
    holder.start()
    try:
        assert held.wait(30)
        starter.start()
        starter.join(20)
        assert started, "the start waited for another thread's import lock"
    finally:
        release.set()
        holder.join()
        if starter.is_alive():
            starter.join()
    out, _ = started[0].communicate(timeout=60)
    assert started[0].returncode == 0 and out.strip() == f"[({3 << 30}, {3 << 30}), (7, 12), (0, 0)]"
    # refused (the kernel's reason, one line): nothing of the program ran
    marker = tmp_path / "ran"
    with pytest.raises(proclimits.LimitsRefused, match=r"^the limits were refused: \[Errno 2\] No such file"):
        proclimits.spawn([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], None, None,
                         tmp_path / "no-cgroup" / "cgroup.procs")
    assert not marker.exists()


# -- a job over memory-bytes -------------------------------------------------------------------

def _run_jobs(tmp_path: Path, limits: cgroups.Detection, memory_bytes: int) -> tuple[dict, dict, str]:
    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme", running_jobs=2, memory_bytes=memory_bytes)
        bob = d.user("acme", "bob", "member")
        fits = d.submit("acme", bob, args=[*TINY_TRAIN, "--run-dir", "runs/fits"]).json()["id"]
        big = d.submit("acme", bob, args=[*TINY_TRAIN, *BIG_MODEL, "--run-dir", "runs/big"]).json()["id"]
        sched = Scheduler(d.store, LocalExecutor(d.root, limits=limits), slots=2, gpus=[])
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            sched.step()
            with d.store.session() as s:
                if all(s.get(Job, j).state != "running" for j in (fits, big)):
                    break
            time.sleep(0.3)
        ok, bad = (d.call("GET", f"/v1/tenants/acme/jobs/{j}", bob).json() for j in (fits, big))
        audit = d.call("GET", "/v1/audit?tenant=acme", d.admin).json()
        return ok, bad, next(a["result"] for a in audit if a["action"] == "job.failed")
    finally:
        d.close()


def test_a_job_over_memory_bytes_fails_as_out_of_memory_under_rlimits(tmp_path: Path) -> None:
    limits = cgroups.Detection(None, "--cgroup none")
    ok, bad, audited = _run_jobs(tmp_path, limits, 4 << 30)  # torch needs ~3 GiB of address space
    log = Path(bad["workspace"], "job.log").read_text()
    assert ok["state"] == "succeeded", Path(ok["workspace"], "job.log").read_text()[-2000:]
    assert log.splitlines()[0] == ("[deepseek server] isolation: rlimits: RLIMIT_AS 4294967296 per process "
                                   "(cgroup v2 not used: --cgroup none)")
    assert bad["state"] == "failed" and bad["exit_code"] == 2, log[-2000:]
    assert bad["message"].startswith("out of memory ([enforce fail") and "5120000000 bytes" in bad["message"]
    assert bad["message"].endswith("(exit code 2)") and audited == bad["message"]


def _test_cgroup() -> Path | None:
    """A cgroup v2 folder the test may use: DEEPSEEK_TEST_CGROUP, else a new child of the cgroup v2
    root when that root hands out memory and is writable (root on a systemd host)."""
    if os.environ.get("DEEPSEEK_TEST_CGROUP"):
        return Path(os.environ["DEEPSEEK_TEST_CGROUP"])
    for mount in cgroups.cgroup2_mounts(Path("/proc/self/mountinfo").read_text()):
        try:
            enabled = (mount / "cgroup.subtree_control").read_text().split()
        except OSError:
            continue
        if "memory" in enabled and os.access(mount, os.W_OK):
            return mount / f"deepseek-test-{os.getpid()}"
    return None


def test_a_job_over_memory_bytes_is_killed_in_its_cgroup(tmp_path: Path) -> None:
    folder = _test_cgroup()
    if folder is None:
        pytest.skip(f"cgroup v2 limits are not writable here ({cgroups.detect('auto').reason}); set "
                    "DEEPSEEK_TEST_CGROUP to a delegated cgroup v2 folder")
    created = not folder.exists()
    try:
        limits = cgroups.detect(str(folder))
        assert limits.cgroups is not None and limits.cgroups.parent == folder
        # a total over the job's processes: 1.5 GiB holds torch and a tiny run, not a 5 GB embedding
        ok, bad, audited = _run_jobs(tmp_path, limits, 3 << 29)
        log = Path(bad["workspace"], "job.log").read_text()
        assert ok["state"] == "succeeded", Path(ok["workspace"], "job.log").read_text()[-2000:]
        assert log.splitlines()[0].startswith(f"[deepseek server] isolation: cgroup v2 {folder}/job-")
        assert "memory.max=1610612736" in log.splitlines()[0]
        assert bad["state"] == "failed" and bad["message"].startswith("out of memory"), (bad, log[-2000:])
        assert not list(folder.glob("job-*"))  # removed when the jobs ended
    finally:
        for sub in folder.glob("job-*"):
            sub.rmdir()
        if created and folder.exists():
            folder.rmdir()


# -- the cap itself (CUDA only) ------------------------------------------------------------------

def test_the_gpu_memory_cap_stops_an_allocation_over_the_share() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("the GPU memory cap needs a CUDA device (set_per_process_memory_fraction)")
    probe = ("import torch\nfrom deepseek_enterprise.service.gpucap import apply_cap\n"
             "print(apply_cap(0.25))\n"
             "total = torch.cuda.get_device_properties(0).total_memory\n"
             "small = torch.empty(int(total * 0.1), dtype=torch.uint8, device='cuda')\n"
             "try:\n    torch.empty(int(total * 0.3), dtype=torch.uint8, device='cuda')\nexcept torch.OutOfMemoryError:\n"
             "    print('refused')\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0")})
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "refused", r.stdout + r.stderr
    assert r.stdout.startswith("GPU memory cap: 0.25 of each of")
