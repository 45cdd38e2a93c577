"""The local executor: each job a process group on this machine.

What it does for every job:

- a workspace ``<root>/tenants/<tenant>/jobs/<id>/`` (the tenant folder and the workspace mode
  0700), the job's ``config.toml`` and extra files written there, its paths checked again just
  before start (``jobpaths``: symbolic links that appeared since submit);
- ``python -I -m deepseek_enterprise.service.child --state DIR <command> ...`` (``-I``: neither
  the workspace nor ``PYTHON*`` variables nor a user site can add modules) in a new session
  (``start_new_session``: its own process group), stdout and stderr to ``job.log``; ``DIR`` is
  the job's server-owned state folder (``jobstate``), where the wrapper says it started and how
  the job ended, out of reach of the job's configured paths. The executor takes the job's launch
  lock there before it forks and hands it to the wrapper, which keeps it while the job lives;
- an environment built from an allow-list (:data:`PASSED`) plus the job's plugin settings
  (``Launch.plugin_env``, data the scheduler gives every job: its server's settings), ``HOME``,
  ``TMPDIR`` and ``XDG_CACHE_HOME`` inside the workspace and ``CUDA_VISIBLE_DEVICES`` from the
  device pool (``""`` for a job without devices); nothing else of the server's environment (its
  secrets, its database URL, its own ``DEEPSEEK_*`` variables) is passed;
- host limits (``cgroups``): with cgroup v2 usable, a cgroup per job (``memory.max`` from
  ``memory_bytes`` as a total over its processes, ``cpu.max`` from ``cpus``, ``pids.max``) the
  wrapper's process joins before the wrapper runs (``proclimits``), read back (OOM kills) and
  removed when the job ends; otherwise rlimits, ``RLIMIT_AS`` (``memory_bytes``, per process);
  both ways ``RLIMIT_CPU`` (``cpu_seconds``) and no core files. The first line of ``job.log``
  says which applies;
- a job holding a share of its GPUs (``gpushare``) gets ``DEEPSEEK_GPU_MEMORY_FRACTION``, which
  the wrapper turns into a per-process GPU memory cap (``gpucap``).

Why a job failed, beyond its exit code (:meth:`Executor.reason`): the kernel's OOM kills in its
cgroup, else what the wrapper wrote to ``exit_reason`` (out of memory, CPU time). An
``exit_code`` that is not one (a garbage file) ends the job :data:`UNREADABLE`: failed, saying so.

A start the server did not see through (killed between the ``starting`` commit and the
``running`` one) is found again by :meth:`LocalExecutor.find`: the launch lock held means the
wrapper lives (its ``started`` marker gives pid and start time, re-attached once ``/proc``
shows that process is a session leader running the wrapper for this job's state folder; not
written yet, or not that: asked again in a later pass); the lock free with a marker means it ran
and ended (its exit code decides, no pid is taken from the file); free without one, it never
started.

Stop: SIGTERM to the process group, SIGKILL after :attr:`LocalExecutor.grace_s`. A process is
known by its pid, its start time (``/proc/PID/stat``) and the boot it ran in, so a recycled pid is
never taken for a job: whether a job's wrapper still runs is :func:`jobstate.alive`, the one rule,
asked by :meth:`LocalExecutor.finished`, :meth:`LocalExecutor.find` and before every signal.

A ``running`` job this server did not start is checked once against the boot id of its marker
(:meth:`LocalExecutor.finished`): another boot's, or a marker that cannot be trusted, means it is
not re-attached (its exit code decides, else it fails saying why); a marker without one keeps the
older rule, pid and start time, which follows every job after that check.

The contract every executor meets (:class:`Executor`, :class:`Launch`, :class:`Started`) is in
:mod:`deepseek_enterprise.service.executor_base`, imported from here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from deepseek import durable
from deepseek.plugins.settings import ENV_NAMES
from deepseek_enterprise.service import gpushare, jobpaths, jobstate, proclimits
from deepseek_enterprise.service.cgroups import Detection
from deepseek_enterprise.service.executor_base import (
    UNREADABLE,
    Executor,
    Launch,
    Started,
    Unavailable,
)
from deepseek_enterprise.service.jobcheck import job_argv
from deepseek_enterprise.service.jobstate import process_start

__all__ = ["PASSED", "UNREADABLE", "Executor", "Launch", "LocalExecutor", "Started", "Unavailable", "process_start"]

PASSED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "DS_ACCELERATOR", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
          "NCCL_SOCKET_IFNAME", "NCCL_DEBUG", "NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST",
          "NVSHMEM_DISABLE_NVLS", "CUDA_DEVICE_ORDER")
"""Variables of the server's environment a job sees (when set); nothing else is passed. The
plugin settings (``DEEPSEEK_PLUGINS``, ...) are not among them: a job gets its own, as data
(``Launch.plugin_env``: its server's settings, on which its command line was checked at submit)."""


class LocalExecutor(Executor):
    """Starts, signals and watches job processes on this machine (module docstring)."""

    shares_gpus = True

    def __init__(self, root: Path, grace_s: float = 30.0, limits: Detection | None = None) -> None:
        super().__init__(root, grace_s)
        self.limits = limits if limits is not None else Detection(None, "no cgroup given to the executor")
        self.boot_id = jobstate.boot_id()
        """This machine's boot id, None where the kernel does not give one (then no job is
        checked against its boot: pid and start time only)."""
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._reasons: dict[int, str] = {}
        self._checked: set[int] = set()
        """Jobs this server did not start whose ``started`` marker was checked against the boot."""

    def local_limits(self) -> Detection:
        """Its jobs' own (``--cgroup``: cgroup v2 or rlimits)."""
        return self.limits

    def workspace(self, tenant: str, job_id: int) -> Path:
        return jobpaths.job_dir(self.root, tenant, job_id)

    def state_dir(self, job_id: int) -> Path:
        """The job's server-owned state folder (``jobstate``), made."""
        return jobstate.make(self.root, job_id)

    def reserve(self, job_id: int) -> str:
        jobstate.clear(self.state_dir(job_id))
        return ""

    @staticmethod
    def environment(workspace: Path, gpus: Sequence[str], job_id: int | None, gpu_fraction: float | None = None,
                    plugin_env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The job's environment: :data:`PASSED` from the server's, its ``plugin_env``
        (``Launch.plugin_env``; None: none, the defaults), its folders, GPUs and share
        (``job_id`` None: a tune job's study check at submit, ``studycheck``, which is no job yet)."""
        env = {k: os.environ[k] for k in PASSED if k in os.environ}
        env.update({k: v for k, v in (plugin_env or {}).items() if k in ENV_NAMES})
        env.setdefault("PATH", "/usr/bin:/bin")
        env.update({"HOME": str(workspace), "TMPDIR": str(workspace / "tmp"),
                    "XDG_CACHE_HOME": str(workspace / ".cache"), "CUDA_VISIBLE_DEVICES": ",".join(gpus),
                    "PYTHONUNBUFFERED": "1", **({} if job_id is None else {"DEEPSEEK_JOB_ID": str(job_id)})})
        if gpu_fraction is not None and gpus:
            env[gpushare.ENV] = repr(float(gpu_fraction))
        return env

    def isolation(self, launch: Launch) -> str:
        """How ``launch`` will be limited, in words."""
        cg = self.limits.cgroups
        if cg is not None:
            text = cg.describe(launch.job_id, launch.memory_bytes, launch.cpus)
        else:
            mem = "unlimited" if launch.memory_bytes is None else f"{launch.memory_bytes} per process"
            cpus = "" if launch.cpus is None else f", cpus {launch.cpus:g} not enforced"
            text = f"rlimits: RLIMIT_AS {mem}{cpus} (cgroup v2 not used: {self.limits.reason})"
        if launch.cpu_seconds is not None:
            text += f"; RLIMIT_CPU {launch.cpu_seconds} s per process"
        if launch.gpus:
            share = "whole" if launch.gpu_fraction is None else \
                f"shared, {launch.gpu_fraction:g} of each (per-process memory cap)"
            text += f"; GPUs {','.join(launch.gpus)} {share}"
        return text

    def prepare(self, launch: Launch) -> Path:
        """The workspace, made (mode 0700) and filled; paths checked again (PathRefused)."""
        tenant_root = jobpaths.tenant_dir(self.root, launch.tenant)
        for folder in (self.root / "tenants", tenant_root, tenant_root / "jobs"):
            folder.mkdir(mode=0o700, exist_ok=True)
            if folder.is_symlink():
                raise jobpaths.PathRefused(f"{folder} is a symbolic link")
        os.chmod(tenant_root, 0o700)
        ws = self.workspace(launch.tenant, launch.job_id)
        if ws.is_symlink():
            raise jobpaths.PathRefused(f"{ws} is a symbolic link")
        ws.mkdir(mode=0o700, exist_ok=True)  # exists when a start was interrupted by a crash
        os.chmod(ws, 0o700)
        (ws / "tmp").mkdir(mode=0o700, exist_ok=True)
        jobpaths.check_job(launch.args, launch.config, launch.files, tenant_root, ws)
        if launch.config is not None:  # whole, or as before: a start after a crash writes it again
            durable.write_text(ws / "config.toml", launch.config)
        for name, body in launch.files.items():
            durable.write_text(ws / name, body)
        return ws

    def argv(self, launch: Launch) -> list[str]:
        state = jobstate.folder(self.root, launch.job_id)
        return [sys.executable, "-I", "-m", "deepseek_enterprise.service.child", "--state", str(state),
                *job_argv(launch.command, launch.config is not None, launch.args)]

    def job_import_path(self) -> list[str] | None:
        """``sys.path`` of this interpreter under ``-I`` (:meth:`argv`'s wrapper), asked of it;
        None when it does not answer (nothing to warn about then: its jobs will say why they fail)."""
        code = "import json, sys; print(json.dumps(sys.path))"
        try:
            done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True,
                                  timeout=60)
            return [str(p) for p in json.loads(done.stdout)]
        except (OSError, subprocess.SubprocessError, ValueError, TypeError):
            return None

    def start(self, launch: Launch) -> Started:
        ws = self.prepare(launch)
        state = self.state_dir(launch.job_id)
        lock = jobstate.lock(state)  # OSError: an earlier launch of the job is alive
        try:
            jobstate.clear(state)
            return self._spawn(launch, ws, lock)
        finally:
            os.close(lock)  # the wrapper holds it from here on

    def _spawn(self, launch: Launch, ws: Path, lock: int) -> Started:
        cg = self.limits.cgroups
        procs = cg.create(launch.job_id, launch.memory_bytes, launch.cpus) / "cgroup.procs" if cg else None
        isolation = self.isolation(launch)
        env = self.environment(ws, launch.gpus, launch.job_id, launch.gpu_fraction, launch.plugin_env)
        with open(ws / "job.log", "ab") as log:
            log.write(f"[deepseek server] isolation: {isolation}\n".encode())
            log.flush()
            try:
                proc = proclimits.spawn(self.argv(launch), launch.memory_bytes, launch.cpu_seconds, procs, cwd=ws,
                                        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, close_fds=True, pass_fds=(lock,))
            except OSError as exc:  # the cgroup or an rlimit was refused (LimitsRefused), or no process started
                if cg is not None:
                    cg.remove(launch.job_id)
                if isinstance(exc, proclimits.LimitsRefused):
                    raise OSError(f"could not start the job under its limits ({isolation}): {exc}") from None
                raise
        self._procs[launch.job_id] = proc
        return Started(proc.pid, process_start(proc.pid) or "", ws, isolation)

    def finished(self, job_id: int, pid: int | None, pid_start: str | None, workspace: Path) -> int | None | bool:
        proc = self._procs.get(job_id)
        if proc is not None:
            code = proc.poll()
            if code is None:
                return None
            del self._procs[job_id]
            self._conclude(job_id)
            return 128 - code if code < 0 else code
        boot, why = None, ""
        if pid is not None and job_id not in self._checked:  # left running by an earlier server
            boot, why = self._recorded_boot(job_id, pid, pid_start)
        if not why and jobstate.alive(pid, pid_start, boot, self.boot_id):
            self._checked.add(job_id)  # from here on followed by pid and start time
            return None
        if not why and boot is not None and self.boot_id is not None and boot != self.boot_id:
            why = (f"the machine rebooted while the job ran (boot id {boot} at its start, {self.boot_id} now): "
                   "it ended with the reboot")
        self._checked.discard(job_id)
        self._conclude(job_id)
        code = self.wrapper_exit_code(job_id, self._reasons)
        if code is False and why:  # no exit code: it fails, saying why it is not followed
            self._reasons[job_id] = why
            return UNREADABLE
        return code

    def _recorded_boot(self, job_id: int, pid: int, pid_start: str | None) -> tuple[str | None, str]:
        """The boot id the job's ``started`` marker records for its wrapper ``pid`` (None: an
        older marker without one, no marker, or a marker naming another process: the rule of pid
        and start time alone, as before boot ids), and why the marker cannot be trusted ('' when
        it can: then the job is not re-attached)."""
        try:
            marker = jobstate.read_started(jobstate.folder(self.root, job_id))
        except jobstate.Unreadable as exc:
            return None, f"not re-attached after the server's restart: its start marker cannot be trusted: {exc}"
        if marker is None or (marker.pid, marker.start) != (pid, pid_start):
            return None, ""
        return marker.boot_id, ""

    def find(self, launch: Launch) -> Started | None:
        state = jobstate.folder(self.root, launch.job_id)
        ws = self.workspace(launch.tenant, launch.job_id)
        alive = jobstate.held(state)
        try:
            marker = jobstate.read_started(state)
        except jobstate.Unreadable as exc:
            if alive:  # a launch lives but cannot be identified: wait until it lets go of its lock
                raise Unavailable(f"job {launch.job_id}: {exc}") from None
            return Started(None, None, ws, f"launched before the server stopped ({exc}); it has ended")
        if marker is None:
            if alive:
                raise Unavailable(f"job {launch.job_id}: its wrapper holds the launch lock but has not "
                                  "written its start marker yet")
            return None
        if not alive:  # ended since: nothing to follow (a pid named in a file is not trusted as a handle)
            return Started(None, None, ws, f"launched before the server stopped (wrapper pid {marker.pid}), ended since")
        if not jobstate.is_wrapper(marker, self.boot_id, state):
            raise Unavailable(f"job {launch.job_id}: its launch lock is held, but pid {marker.pid} that its marker "
                              "names is not its wrapper")
        return Started(marker.pid, marker.start, ws, f"launched before the server stopped: wrapper pid {marker.pid}")

    def _conclude(self, job_id: int) -> None:
        """The job ended: note an OOM kill in its cgroup, then remove the cgroup."""
        cg = self.limits.cgroups
        if cg is None:
            return
        kills = cg.oom_kills(job_id)
        if kills:
            self._reasons[job_id] = (f"out of memory: the kernel killed {kills} process(es) of the job at its "
                                     f"memory limit (memory-bytes, cgroup {cg.path(job_id)} memory.max)")
        cg.remove(job_id)

    def reason(self, job_id: int, workspace: Path) -> str:
        return self._reasons.pop(job_id, "") or jobstate.read_reason(jobstate.folder(self.root, job_id))

    def signal(self, pid: int | None, pid_start: str | None, sig: int) -> None:
        """``sig`` to the job's process group, if that process is still the job (a handle the
        server holds was started in this boot, or checked against it when re-attached)."""
        if not jobstate.alive(pid, pid_start):
            return
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self, pid: int | None, pid_start: str | None) -> None:
        self.signal(pid, pid_start, signal.SIGTERM)

    def kill(self, pid: int | None, pid_start: str | None) -> None:
        self.signal(pid, pid_start, signal.SIGKILL)

    def close(self) -> None:
        self._procs.clear()  # they run on; a restarted server re-attaches them or marks them lost
