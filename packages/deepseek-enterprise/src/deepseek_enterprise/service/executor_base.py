"""The contract of a job executor: what the scheduler hands it to start a job (:class:`Launch`),
the handle it keeps (:class:`Started`), the methods it calls (:class:`Executor`) and what they
signal (:class:`Unavailable`, :data:`UNREADABLE`). The local executor
(:mod:`deepseek_enterprise.service.executor`) and the Slurm one implement it; import these names
from ``deepseek_enterprise.service.executor``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any

from deepseek.plugins.settings import normalize_dist
from deepseek_enterprise.service import jobpaths, jobstate
from deepseek_enterprise.service.cgroups import Cgroups, Detection

UNREADABLE = -1
"""What :meth:`Executor.finished` returns for a job that ended but whose exit code cannot be
trusted (its ``exit_code`` file holds garbage): the job fails with no exit code and
:meth:`Executor.reason` says why."""


class Unavailable(OSError):
    """The executor cannot take jobs now (its cluster does not answer): the scheduler puts the
    job back in its place in the queue and starts nothing for a while (``Scheduler.retry_s``).
    From :meth:`Executor.find`: it cannot tell yet; the job stays ``starting``."""


@dataclass(frozen=True)
class Launch:
    """What the executor needs to start one job."""

    job_id: int
    tenant: str
    command: str
    args: list[str]
    config: str | None
    files: dict[str, str]
    gpus: list[str]
    memory_bytes: int | None = None
    cpu_seconds: int | None = None
    cpus: float | None = None
    gpu_fraction: float | None = None
    """The share of each of ``gpus`` the job holds (None: whole GPUs, no memory cap)."""
    ref: str = ""
    """What :meth:`Executor.reserve` returned for this start (the Slurm job name), kept with the
    job from its ``starting`` commit on."""
    plugin_env: dict[str, str] = field(default_factory=dict)
    """The plugin settings the job runs with, as the ``DEEPSEEK_*`` variables that give them to
    a process (:func:`plugin_env`): its server's, on which its command line was checked at submit
    (empty: the defaults, every installed plugin). Put in the job's environment as they are; the
    server's own environment is not read for them."""


def plugin_env(settings: Any) -> dict[str, str]:
    """The ``DEEPSEEK_*`` variables that give a job the plugin settings ``settings``
    (``deepseek.plugins.settings.PluginSettings``, its root options included), those set."""
    return {key: value for key, value in settings.as_env().items() if value is not None}


@dataclass(frozen=True)
class Started:
    """The executor's handle on a started job, kept in the database: ``pid`` an integer (a process
    id, a Slurm job id) or None, ``pid_start`` at most 32 characters (a start time, a job name)."""

    pid: int | None
    pid_start: str | None
    workspace: Path
    isolation: str = ""
    """How the job is limited, in words (logged and audited)."""


EXIT_CODES = range(-(2**31), 2**31)
"""The exit codes :meth:`Executor.finished` may return (the database keeps them as 32-bit integers)."""

RETURNS: dict[str, tuple[Callable[[object], bool], str]] = {
    "start": (lambda v: isinstance(v, Started), "a Started (Executor.start); what it launched may still run"),
    "find": (lambda v: v is None or isinstance(v, Started), "a Started or None (Executor.find)"),
    "finished": (lambda v: v is None or v is False or (type(v) is int and v in EXIT_CODES),
                 "an exit code (int), None or False (Executor.finished)"),
    "local_limits": (lambda v: isinstance(v, Detection) and (v.cgroups is None or isinstance(v.cgroups, Cgroups)),
                     "a cgroups.Detection (Executor.local_limits)"),
    "at_start": (lambda v: v in jobpaths.AT_START, f"one of {', '.join(map(repr, jobpaths.AT_START))} "
                 "(Executor.at_start)"),
}
"""What each method whose answer the scheduler acts on may return, and the contract a message names
when it returns something else: the scheduler fails that job alone as if the method had raised."""


class Executor:
    """The contract of a job executor (registered with ``deepseek_register_executors``): the
    scheduler starts jobs with :meth:`start`, watches them with :meth:`finished`, stops them with
    :meth:`terminate` then, after :attr:`grace_s`, :meth:`kill`. An exception a method's docstring
    does not name is taken for a bug: that job fails with one line naming the executor, its
    distribution and the method, and the server goes on with the other jobs."""

    shares_gpus: bool = False
    """Whether the executor places jobs on the scheduler's GPUs and caps a shared job's GPU memory
    (``Launch.gpu_fraction``). When False, every job holds whole GPUs whatever its tenant's
    ``gpu_memory_fraction`` quota (the scheduler never counts a fraction for it)."""

    def __init__(self, root: Path, grace_s: float = 30.0) -> None:
        self.root = root
        self.grace_s = grace_s

    def reserve(self, job_id: int) -> str:
        """Called before the scheduler commits the job as ``starting``: forget what an earlier
        start of it left, and return what identifies the coming start (kept with the job, given
        back in ``Launch.ref``; '' when the job id is enough): at most 32 printable characters
        (the job fails with a message otherwise). It runs inside the transaction that holds the
        job's tenant row: be quick (no network call)."""
        return ""

    def start(self, launch: Launch) -> Started:
        """Start the job (raise ``jobpaths.PathRefused`` or ``OSError`` when it cannot: the job
        fails; :class:`Unavailable` when it cannot now: the job goes back to the queue)."""
        raise NotImplementedError

    def find(self, launch: Launch) -> Started | None:
        """After a restart, for a job left ``starting`` (the server stopped between that commit
        and ``running``'s): its handle when :meth:`start` launched it (alive or ended since:
        :meth:`finished` then tells), None when it never did (the job is queued again, not
        counted as an attempt); :class:`Unavailable` when it cannot tell yet (asked again in a
        later pass). This default cannot find anything: an executor that does not override it
        may start such a job twice."""
        return None

    def finished(self, job_id: int, pid: int | None, pid_start: str | None, workspace: Path) -> int | None | bool:
        """The exit code of a job that ended; ``None`` while it runs; ``False`` when it is gone
        without a known exit code (lost); :data:`UNREADABLE` when what should say it is garbage."""
        raise NotImplementedError

    def reason(self, job_id: int, workspace: Path) -> str:
        """Why a job that :meth:`finished` failed, in one line ('' when its exit code says all)."""
        return ""

    def terminate(self, pid: int | None, pid_start: str | None) -> None:
        """Ask the job to stop (it may write a checkpoint)."""

    def kill(self, pid: int | None, pid_start: str | None) -> None:
        """Stop the job now."""

    def close(self) -> None:
        """The server stops; running jobs are left to run (a restart re-attaches them)."""

    def at_start(self, path: PurePath, has_config: bool, files: Mapping[str, str]) -> str:
        """What ``path``, as the job names it (relative to its working directory), is in the
        workspace :meth:`start` gives the job, at its start: ``"config"`` (the job's config.toml),
        ``"file"`` (one of its ``files``, by name), ``"absent"`` (nothing is there) or
        ``"unknown"`` (what only the job's start will show). The server's submit check reads a
        job's config and files by this answer (``jobcheck``), so a job is refused at submit only
        for what its own workspace holds. The default is the layout ``LocalExecutor.prepare``
        makes, which the Slurm executor uses too (``jobpaths.at_start``: the config.toml, the
        files under their names, ``tmp/`` and ``job.log``, nothing else); an executor that lays
        out a workspace otherwise (a volume that already holds files, other names) overrides it,
        answering ``"unknown"`` for a path it cannot tell. It runs in the server's process at
        every submit: read no file, call nothing remote."""
        return jobpaths.at_start(path, has_config, files)

    def local_limits(self) -> Detection:
        """How the server holds a process it runs on its own machine for a job to the limits of the
        job's tenant (``memory-bytes``, ``cpu-seconds``, ``cpus``): a ``tune`` job's study check at
        submit (``studycheck``), which imports torch. A ``cgroups.Detection``: cgroup v2
        (``Detection.cgroups``: a cgroup of the process's own under that folder, ``memory.max`` a
        total of resident memory) or rlimits (``Detection.cgroups`` None: ``RLIMIT_AS``, address
        space, of which importing torch alone maps 3.1 GB: under a smaller ``memory-bytes`` such a
        check cannot run); ``RLIMIT_CPU`` either way. ``Detection.holds_jobs`` says whether the
        executor's jobs run under the same limits: then a check that cannot run under them refuses
        its job (the job could not run either), else it leaves the study's check to the job. The
        local executor answers the limits its own jobs get (``--cgroup``); this default, rlimits
        that hold no job, is for an executor whose jobs run elsewhere (its cluster's limits are not
        this machine's). It runs in the server's process at such a submit: read no file, call
        nothing remote."""
        return Detection(None, "the executor's jobs run on other machines", holds_jobs=False)

    def job_import_path(self) -> list[str] | None:
        """Where the Python that runs this executor's jobs finds modules and distributions (its
        ``sys.path``), or None where the server cannot tell (jobs in an image of their own). The
        server reads it once at start and warns about every plugin it loaded that is not there
        (:func:`plugins_jobs_lack`): its submit check would accept a job naming that plugin's
        components, which the job itself would then not find. The local and Slurm executors'
        wrapper runs this interpreter with ``-I``, which ignores ``PYTHONPATH``."""
        return None

    def wrapper_exit_code(self, job_id: int, reasons: dict[int, str]) -> int | bool:
        """For executors whose jobs run under the wrapper (``child --state``): the exit code it
        wrote to the job's state folder, False when it wrote none, :data:`UNREADABLE` (with the
        why in ``reasons[job_id]``) when what is there cannot be trusted."""
        try:
            code = jobstate.read_exit_code(jobstate.folder(self.root, job_id))
        except jobstate.Unreadable as exc:
            reasons[job_id] = f"the job's exit code cannot be trusted: {exc}"
            return UNREADABLE
        return False if code is None else code


def plugins_jobs_lack(records: Iterable[Any], executor: Executor) -> list[str]:
    """One line for each loaded plugin distribution (``records``: the server's host's
    ``PluginRecord`` values) that the jobs' Python does not find (:meth:`Executor.job_import_path`),
    such as one found only through the server's ``PYTHONPATH``."""
    path = executor.job_import_path()
    if path is None:
        return []
    found = {normalize_dist(d.metadata["Name"]) for d in metadata.distributions(path=path) if d.metadata["Name"]}
    return [f"{r.dist} {r.version} is loaded by the server but is not installed where its jobs' Python finds "
            f"distributions (the server's PYTHONPATH does not reach jobs): a job naming its components passes the "
            f"submit check, then fails as if they did not exist; install it into the server's environment "
            f"({sys.prefix})"
            for r in records if r.status == "ok" and normalize_dist(r.dist) not in found]
