"""The Slurm executor (``deepseek server --executor slurm``): each job an ``sbatch`` job.

The workspace is prepared exactly as the local executor does (``LocalExecutor.prepare``: mode
0700, files written, paths checked again), and the job runs the same wrapper
(``python -I -m deepseek_enterprise.service.child --state DIR COMMAND ARGS``, which writes its
start marker and ``exit_code`` into the job's server-owned state folder ``DIR``, ``jobstate``)
as the batch script's only command (``exec``, arguments quoted with ``shlex``; the script goes to
``sbatch`` on stdin). ``sbatch`` gets:

- ``--job-name deepseek-<id>-<8 hex>``: the name is the job's identity, chosen by
  :meth:`SlurmExecutor.reserve` before the scheduler commits the job ``starting`` (kept in
  ``pid_start``; the Slurm job id in ``pid`` once it runs), so a Slurm job id reused by another
  job is never taken for it, and a server killed during the submit finds the job by its name;
- ``--account <tenant>``, ``--chdir <workspace>``, ``--output <workspace>/job.log``
  (``--open-mode=append``), ``--no-requeue``, one node, one task, ``--partition`` when the server
  was given one (``DEEPSEEK_SLURM_PARTITION``);
- ``--gres=gpu:N`` for a job asking N devices (Slurm picks the GPUs and sets
  ``CUDA_VISIBLE_DEVICES``); a job without devices gets ``CUDA_VISIBLE_DEVICES=""`` from the
  batch script itself (Slurm drops the empty variable from the exported environment);
- ``--mem`` from the tenant's ``memory_bytes`` (MiB, rounded down) and ``--time`` from its
  ``cpu_seconds`` (minutes, rounded up): Slurm's wall-clock limit;
- ``--export=ALL`` from an ``sbatch`` process whose environment *is* the job's scrubbed one (the
  local executor's allow-list, ``HOME``/``TMPDIR`` in the workspace, plus ``SLURM_CONF`` when the
  server has it), so nothing else of the server's environment reaches the job; ``RLIMIT_CPU``
  (``cpu_seconds``) and no core files are set on ``sbatch`` and Slurm propagates them to the job
  (``PropagateResourceLimits``, ``ALL`` by default). The memory limit is ``--mem`` alone (a total
  over the job's processes where the cluster enforces it), not ``RLIMIT_AS``: a CUDA process
  reserves far more address space than it uses.

State comes from one ``squeue --states=all`` listing of the server user's jobs per ``poll_s``
(id, state, name; lines that do not parse are ignored). A job listed in a final state ended: its
code is Slurm's ``ExitCode`` (``scontrol show job``: ``N:S`` is N, or 128+S when a signal ended
it; ``0:0`` in a state other than ``COMPLETED``, a job cancelled before it ran, is
:data:`NEVER_RAN`), which the job cannot write; the ``exit_code`` its wrapper wrote only when
Slurm does not say. A job no longer listed (Slurm forgets ended jobs after ``MinJobAge``) or
listed under another name is concluded from ``exit_code``, else lost. When
``squeue`` fails (the controller is down) nothing is concluded: the jobs stay running until Slurm
answers again; an ``sbatch`` that fails while ``squeue`` fails too raises ``Unavailable``: the job
stays queued. Cancel: ``scancel --signal=TERM --full`` (a pending job is simply cancelled), then
after the grace ``scancel --signal=KILL --full`` and ``scancel``; each names the job's name too,
so a reused id is never signalled.

Submitting: :meth:`SlurmExecutor.start` takes the job's launch lock (``jobstate``) and hands it to
``sbatch``, which holds it until it has submitted. :meth:`SlurmExecutor.find`, for a job a killed
server left ``starting``: the lock still held means an ``sbatch`` is still submitting (asked again
later); else a Slurm job of the server's user under the reserved name is the job (re-attached);
else a start marker of its wrapper (with its ``SLURM_JOB_ID``) means it ran and Slurm forgot it;
else it was never submitted.

Why a job failed, beyond its code (:meth:`SlurmExecutor.reason`): what the wrapper wrote to
``exit_reason``, else ``slurmstepd``'s line in the log saying it killed the job over its
``--mem``, else the final Slurm state (``TIMEOUT``, ``OUT_OF_MEMORY``, ``NODE_FAIL`` ...).
"""

from __future__ import annotations

import logging
import math
import os
import re
import resource
import secrets
import shlex
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from deepseek.errors import UsageError
from deepseek.parsing import read_tail
from deepseek_enterprise.service import jobstate
from deepseek_enterprise.service.executor import (
    UNREADABLE,
    Executor,
    Launch,
    LocalExecutor,
    Started,
    Unavailable,
)
from deepseek_enterprise.service.slurmparse import (  # noqa: F401 (Listed, ACTIVE: this module's API too)
    ACTIVE,
    ENDED,
    NAME,
    NEVER_RAN,
    REASONS,
    SBATCH_ID,
    Listed,
    first_line,
    memory_kill,
    parse_exit,
    parse_squeue,
)

log = logging.getLogger("deepseek.server")

_PARTITION = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)


class SlurmError(OSError):
    """A Slurm command failed or answered something that is not what it should (one line)."""


def _rlimits(cpu_seconds: int | None) -> Callable[[], None]:
    def apply() -> None:  # in sbatch between fork and exec; Slurm propagates them to the job
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if cpu_seconds is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))

    return apply


class SlurmExecutor(Executor):
    """Submits jobs with ``sbatch`` and follows them with ``squeue`` (module docstring)."""

    def __init__(self, root: Path, grace_s: float = 30.0, *, partition: str | None = None,
                 poll_s: float = 2.0, timeout_s: float = 60.0) -> None:
        super().__init__(root, grace_s)
        partition = partition if partition is not None else os.environ.get("DEEPSEEK_SLURM_PARTITION") or None
        if partition is not None and not _PARTITION.fullmatch(partition):
            raise UsageError(f"DEEPSEEK_SLURM_PARTITION={partition!r}: a Slurm partition name is letters, digits, "
                             "'_', '.' and '-'")
        missing = [t for t in ("sbatch", "squeue", "scancel", "scontrol") if shutil.which(t) is None]
        if missing:
            raise UsageError(f"--executor slurm: {', '.join(missing)} not found on PATH (install Slurm's client "
                             "commands, e.g. Debian's slurm-client, and its slurm.conf)")
        self.partition = partition
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.workspaces = LocalExecutor(root, grace_s)  # the same workspace, environment and wrapper
        self._listing: dict[int, Listed] | None = None
        self._listed_at = -math.inf
        self._reasons: dict[int, str] = {}
        self._warned = False

    # -- Slurm commands ---------------------------------------------------------------------

    def _tool_env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}
        if "SLURM_CONF" in os.environ:
            env["SLURM_CONF"] = os.environ["SLURM_CONF"]
        return env

    def _run(self, argv: Sequence[str], *, stdin: str | None = None, env: dict[str, str] | None = None,
             preexec: Callable[[], None] | None = None, pass_fds: tuple[int, ...] = ()
             ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(list(argv), input=stdin, env=env or self._tool_env(), capture_output=True,
                                  text=True, errors="replace", timeout=self.timeout_s, preexec_fn=preexec,
                                  stdin=None if stdin is not None else subprocess.DEVNULL, pass_fds=pass_fds)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{argv[0]} did not answer within {self.timeout_s:g} s") from None
        except (OSError, subprocess.SubprocessError) as exc:
            raise SlurmError(f"{argv[0]}: {exc}") from None

    def listing(self, fresh: bool = False) -> dict[int, Listed] | None:
        """The server user's Slurm jobs, at most ``poll_s`` old; None when ``squeue`` fails."""
        if fresh or self._listing is None or time.monotonic() - self._listed_at > self.poll_s:
            self._listing = None
            try:
                out = self._run(["squeue", "--noheader", "--states=all", f"--user={os.getuid()}",
                                 "--format=%i|%T|%j"])
            except SlurmError as exc:
                out = None
                error = str(exc)
            else:
                error = first_line(out.stderr) or f"exit code {out.returncode}"
            if out is None or out.returncode != 0:
                if not self._warned:
                    log.warning("squeue failed (%s): Slurm jobs are left running until it answers", error)
                    self._warned = True
                return None
            self._warned = False
            self._listing, self._listed_at = parse_squeue(out.stdout), time.monotonic()
        return self._listing

    # -- the Executor contract --------------------------------------------------------------

    def sbatch_args(self, launch: Launch, workspace: Path, name: str) -> list[str]:
        out = str(workspace / "job.log").replace("%", "%%")  # '%' starts a Slurm file-name pattern
        args = ["sbatch", "--parsable", f"--job-name={name}", f"--account={launch.tenant}",
                f"--chdir={workspace}", f"--output={out}", "--open-mode=append", "--export=ALL",
                "--no-requeue", "--nodes=1", "--ntasks=1"]
        if self.partition is not None:
            args.append(f"--partition={self.partition}")
        if launch.gpus:
            args.append(f"--gres=gpu:{len(launch.gpus)}")
        if launch.memory_bytes is not None:
            args.append(f"--mem={max(1, launch.memory_bytes >> 20)}M")
        if launch.cpu_seconds is not None:
            args.append(f"--time={max(1, math.ceil(launch.cpu_seconds / 60))}")
        return args

    def job_import_path(self) -> list[str] | None:
        return self.workspaces.job_import_path()  # the same wrapper, on machines that share this install

    def reserve(self, job_id: int) -> str:
        jobstate.clear(jobstate.make(self.root, job_id))
        return f"deepseek-{job_id}-{secrets.token_hex(4)}"

    def _name(self, launch: Launch) -> str | None:
        """The reserved job name of ``launch`` (None when it is not one of this job's)."""
        ok = NAME.fullmatch(launch.ref) and launch.ref.startswith(f"deepseek-{launch.job_id}-")
        return launch.ref if ok else None

    def start(self, launch: Launch) -> Started:
        ws = self.workspaces.prepare(launch)
        name = self._name(launch) or self.reserve(launch.job_id)
        state = jobstate.make(self.root, launch.job_id)
        lock = jobstate.lock(state)  # OSError: an earlier sbatch of the job is still submitting
        try:
            jobstate.clear(state)
            return self._submit(launch, ws, name, lock)
        finally:
            os.close(lock)

    def _submit(self, launch: Launch, ws: Path, name: str, lock: int) -> Started:
        env = self.workspaces.environment(ws, [], launch.job_id, plugin_env=launch.plugin_env)
        if launch.gpus:
            env.pop("CUDA_VISIBLE_DEVICES", None)  # Slurm sets it to the GPUs it allocates
        env.update({k: v for k, v in self._tool_env().items() if k == "SLURM_CONF"})
        argv = self.sbatch_args(launch, ws, name)
        # Slurm drops an empty CUDA_VISIBLE_DEVICES from the exported environment: set it again
        # (a job without devices must not see the node's GPUs where no device cgroup hides them)
        mask = "" if launch.gpus else "export CUDA_VISIBLE_DEVICES=''\n"
        script = f"#!/bin/sh\n{mask}exec {shlex.join(self.workspaces.argv(launch))}\n"
        self._listing = None
        try:
            done = self._run(argv, stdin=script, env=env, preexec=_rlimits(launch.cpu_seconds), pass_fds=(lock,))
        except SlurmError:
            self._cancel_by_name(name)  # it may have been queued before sbatch stopped answering
            raise
        if done.returncode != 0:
            why = first_line(done.stderr) or f"exit code {done.returncode}"
            if self.listing(fresh=True) is None:  # the controller does not answer: not the job's fault
                raise Unavailable(f"sbatch failed and squeue does not answer either (Slurm's controller is down?): "
                                  f"{why}")
            raise SlurmError(f"sbatch refused the job: {why}")
        m = SBATCH_ID.fullmatch(done.stdout.strip())
        if m is None:
            self._cancel_by_name(name)
            raise SlurmError(f"sbatch answered {done.stdout.strip()[:200]!r}, not a job id")
        slurm_id = int(m.group(1))
        limits = [a for a in argv if a.startswith(("--account", "--gres", "--mem", "--time", "--partition"))]
        return Started(slurm_id, name, ws, f"Slurm job {slurm_id} ({' '.join(limits)})")

    def find(self, launch: Launch) -> Started | None:
        name = self._name(launch)
        if name is None:
            return None  # no name was reserved: nothing was submitted under one
        state = jobstate.folder(self.root, launch.job_id)
        if jobstate.held(state):
            raise Unavailable(f"job {launch.job_id}: its sbatch is still submitting")
        jobs = self.listing(fresh=True)
        if jobs is None:
            raise Unavailable(f"job {launch.job_id}: squeue does not answer")
        ws = self.workspaces.workspace(launch.tenant, launch.job_id)
        mine = sorted(i for i, entry in jobs.items() if entry.name == name)
        if mine:
            return Started(mine[-1], name, ws, f"Slurm job {mine[-1]}, submitted before the server stopped")
        try:
            marker = jobstate.read_started(state)
        except jobstate.Unreadable:
            marker = None
        if marker is not None and marker.slurm_job_id is not None:  # it ran; Slurm has forgotten it since
            return Started(marker.slurm_job_id, name, ws, f"Slurm job {marker.slurm_job_id}, ended before the "
                                                          "server restarted")
        return None

    def finished(self, job_id: int, pid: int | None, pid_start: str | None, workspace: Path) -> int | None | bool:
        if pid is None or pid_start is None or not NAME.fullmatch(pid_start):
            return self.wrapper_exit_code(job_id, self._reasons)  # never submitted to Slurm by this executor
        jobs = self.listing()
        if jobs is None:
            return None  # Slurm does not answer: nothing is concluded
        entry = jobs.get(pid)
        if entry is None or entry.name != pid_start:
            return self.wrapper_exit_code(job_id, self._reasons)  # forgotten by Slurm (MinJobAge), or the id is another job's
        if entry.state not in ENDED:
            return None
        try:  # Slurm's record first: the job cannot write it
            shown = self._run(["scontrol", "--oneliner", "show", "job", str(pid)])
        except SlurmError:
            return None
        parsed = parse_exit(shown.stdout, pid) if shown.returncode == 0 else None
        if parsed is None:
            code = self.wrapper_exit_code(job_id, self._reasons)
        else:
            code = parsed
            if code == 0 and entry.state != "COMPLETED":
                code = NEVER_RAN  # cancelled while pending, a deadline, a boot failure: not a success
        if code != 0 and code is not False and code != UNREADABLE:
            reason = memory_kill(_log_tail(workspace)) or REASONS.get(entry.state, "")
            if reason:
                self._reasons[job_id] = reason
        said = "no exit code" if code is False else "an unreadable exit code" if code == UNREADABLE else f"exit code {code}"
        _note(workspace, f"[deepseek server] Slurm job {pid} ended {entry.state}, {said}\n")
        return code

    def reason(self, job_id: int, workspace: Path) -> str:
        slurm = self._reasons.pop(job_id, "")
        return jobstate.read_reason(jobstate.folder(self.root, job_id)) or slurm

    def _scancel(self, pid: int | None, name: str | None, *extra: str) -> None:
        if pid is None or name is None or not NAME.fullmatch(name):
            return
        self._listing = None
        try:
            done = self._run(["scancel", f"--name={name}", *extra, str(pid)])
        except SlurmError as exc:
            log.warning("scancel of Slurm job %s failed: %s", pid, exc)
            return
        if done.returncode != 0:
            log.warning("scancel of Slurm job %s failed: %s", pid, first_line(done.stderr))

    def _cancel_by_name(self, name: str) -> None:
        try:
            self._run(["scancel", f"--name={name}", f"--user={os.getuid()}"])
        except SlurmError:
            pass

    def terminate(self, pid: int | None, pid_start: str | None) -> None:
        jobs = self.listing(fresh=True) or {}
        entry = jobs.get(pid) if pid is not None else None
        if entry is not None and entry.state == "PENDING":
            self._scancel(pid, pid_start)  # nothing runs yet: no checkpoint to write
        else:
            self._scancel(pid, pid_start, "--signal=TERM", "--full")

    def kill(self, pid: int | None, pid_start: str | None) -> None:
        self._scancel(pid, pid_start, "--signal=KILL", "--full")
        self._scancel(pid, pid_start)

    def close(self) -> None:
        self._listing = None  # the Slurm jobs run on; a restarted server re-attaches them by id and name


def _open_log(workspace: Path, flags: int) -> int | None:
    """The job's log opened, None unless it is a regular file: never through a link, and never
    waiting on a FIFO the job put in its place (that would stop the scheduler)."""
    try:
        fd = os.open(workspace / "job.log", flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _log_tail(workspace: Path, size: int = 16384) -> str:
    try:  # as _open_log: a regular file, never through a link the job put there
        return read_tail(workspace / "job.log", size, follow_links=False)
    except OSError:
        return ""


def _note(workspace: Path, text: str) -> None:
    """Append one line to the job's log (a regular file: never through a link the job put there)."""
    fd = _open_log(workspace, os.O_WRONLY | os.O_APPEND)
    if fd is None:
        return
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
