"""A ``tune`` job's study check at submit, run in a child process: what ``deepseek tune`` checks
before its first trial and the server's own checks (``jobcheck``) cannot, since it builds configs
and so imports torch, which the server's process never does: the base config and every trial
config its space reaches built and validated (the components' own keys: ``model.d_modle``), the
tuner's own rules for them and for the objective (the ``training`` tuner's ``data.eval_batches =
0``), a ``model.*`` entry's model built on the meta device
(:func:`deepseek_enterprise.tune.cli.check_before_trials`).

Only a job that runs a study gets it (:func:`runs_study`: its command line parsed on the server
runs enterprise's ``tune``; ``tune --help`` prints its help and succeeds, accepted with no child
like any command's help). :func:`study_refusal` runs it once the job passed every other check
of its submit (``jobcheck``, the role, the quotas and ``jobpaths``: a job naming a path outside
its tenant's folder never reaches the child, which reads the files the config names). It lays
the job's workspace out in a private temporary folder (its ``workspace/``) as the job will find
it at its start (the default layout, ``jobpaths.at_start``: its ``config.toml``, its files, an
empty ``tmp/``) and runs
``python -I -m deepseek_enterprise.service.studycheck ARGS`` there, ``ARGS`` the job's command
line (``jobcheck.job_argv``): the server's interpreter, isolated as the job's is, with the job's
environment (``LocalExecutor.environment``: the server's plugin settings, ``HOME`` and
``TMPDIR`` in that folder, no GPU) and its working folder, so a relative path (a dataset's
``path``, a DeepSpeed file) is read where the job reads it and an absolute one in the tenant's
folder as it is now. The child (:func:`main`) parses the line as ``jobcheck`` does, runs
``deepseek tune``'s checks before its study folder (:func:`deepseek_enterprise.tune.cli.tune_setup`)
and the study's check, and prints its verdict as its last line of output, a JSON object:
``{"refused": LINE}`` (the line the job would print) or ``{"refused": null}``. Its stdout and
stderr go to files of the private folder, beside ``workspace/``, of which the server reads the
last :data:`OUTPUT_TAIL` bytes each (``deepseek.parsing.read_tail``), never the whole; a child
writing more than :data:`OUTPUT_BYTES` to one is killed (no verdict), so it fills no disk either.

Cost: one interpreter start and torch import per ``tune`` submit that passed the other checks,
4.0-4.5 s of CPU and 750 MB resident at its peak, measured (docs/service.md); at most
:data:`AT_ONCE` children run at a time, a submit waits for its turn at most :data:`SLOT_WAIT_S`
(then the job is accepted and checks its study when it runs, as for no verdict below: each
waiting submit holds one of the server's request threads, so many ``tune`` submits at once must
not hold them all for minutes and stall every other request). What bounds it: the child
runs under the job's own limits (its tenant's quota), applied as the server's executor applies
them to its jobs (``Executor.local_limits``, :func:`local_limits`): in a cgroup v2 of its own,
``check-<pid>-<n>`` beside the jobs' (``memory.max`` ``memory_bytes``, a total of resident memory,
``cpu.max`` ``cpus``; removed when it ends), where the local executor's jobs get cgroups, else
``RLIMIT_AS`` ``memory_bytes`` (address space: importing torch maps 3.1 GB, so under a smaller
quota the child fails to import it, :func:`_short_of_address_space`: where the server's jobs are
held so too, ``Detection.holds_jobs``, the job could not run either and is refused with one line
naming the tenant's ``memory-bytes`` and the fix, else the check is left to the job);
``RLIMIT_CPU`` ``cpu_seconds`` either way, at most :data:`CHILD_TIMEOUT_S` whatever the
quota. They apply before the child's interpreter starts, and no code runs between fork and exec
in the server's threaded process (``proclimits``). Also, the checks that refused a member's jobs
count toward :class:`Refusals` (:data:`REFUSALS_PER_HOUR` per member): past it, that member's
``tune`` jobs are checked when they run, like every job they then count toward the tenant's queue
quotas. A server
run with ``--no-study-check`` (``Service.study_check``) starts no child at all. A child that ends
otherwise (an exit code, killed at a limit, no verdict, over :data:`CHILD_TIMEOUT_S`) leaves the
check to the job, with a warning in the server's log: the job is accepted. So does a server whose
executor lays workspaces out otherwise (it overrides ``Executor.at_start``): what the check would
read there is the executor's to say; and one whose ``Executor.local_limits`` breaks its contract.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from deepseek.errors import clipped_words, one_line
from deepseek_enterprise.service import proclimits
from deepseek_enterprise.service.cgroups import Detection

log = logging.getLogger("deepseek.server")

CHILD_TIMEOUT_S = 120.0
"""How long a study check may take (an interpreter start, torch imported, configs built)."""
AT_ONCE = 2
"""Study checks running at once; a submit beyond them waits for one to end."""
_slots = threading.BoundedSemaphore(AT_ONCE)
_checks = itertools.count()
"""Numbers the study checks' cgroups (``check-<pid>-<n>``)."""
SLOT_WAIT_S = 30.0
"""How long a submit waits for one of the :data:`AT_ONCE` checks to end before it leaves its
job's study check to the job (accepted, checked when it runs; logged)."""
REFUSALS_PER_HOUR = 20
"""Study checks that may refuse one member's ``tune`` jobs per hour before that member's ``tune``
jobs are checked when they run instead (:class:`Refusals`)."""
CHILD_ARGS = ("-I", "-m", __name__)
"""The child's interpreter options before the job's command line: isolated as the job's, this
module run as its script (:func:`main`)."""
OUTPUT_TAIL = 64 << 10
"""Bytes of each of the child's outputs read back, from its end (``deepseek.parsing.read_tail``):
its stdout's (the verdict is its last line) and its stderr's (its last line for the log, and the
address-space check). It writes them to files of its private folder, whatever it prints past that
is never read, and the folder goes when the check ends."""
OUTPUT_BYTES = 16 << 20
"""The most the child may write to each of those files (its verdict, a traceback: a few KiB);
past it, it is killed (no verdict: the job checks its study when it runs), so a child printing
without end fills neither the server's memory nor its disk."""
POLL_S = 0.1
"""How often a running child's output files are measured against :data:`OUTPUT_BYTES` (it may
write what it can in that time past it)."""
OUT_OF_ADDRESS_SPACE = ("MemoryError", "failed to map segment", "Cannot allocate memory")
"""What a process stopped by ``RLIMIT_AS`` prints last: Python's ``MemoryError``, the dynamic
loader's failure to map a library (torch's at its import, ``libpython``'s at the interpreter's
start), the kernel's ``ENOMEM`` (an ``exec`` refused)."""
UNREAD_OPTIONS = ("--out", "--storage")
"""``deepseek tune``'s options the study check never reads (the study's folder and storage are
checked when the job runs): an absolute path there leaves the check at submit as it is."""


class Refusals:
    """Per member, the study checks that refused their ``tune`` jobs in the last ``window_s``
    seconds (this server's memory: a restart forgets them). A refused job is no job, so no quota
    counts it; this does: a member who reached ``limit`` has their ``tune`` jobs accepted without
    the check at submit, checked when they run (queued, so the tenant's ``queued_jobs`` and
    ``running_jobs`` count them), until older refusals leave the window. A check counts from its
    start (:meth:`begin`) to its end (:meth:`end`) as a refusal may: a member's submits at once
    never run more checks than the refusals they have left (each would have passed a count of
    the refusals alone, and their refusals overshot the limit)."""

    def __init__(self, limit: int = REFUSALS_PER_HOUR, window_s: float = 3600.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._times: dict[int, deque[float]] = {}
        self._running: dict[int, int] = {}
        self._lock = threading.Lock()

    def _recent(self, user_id: int) -> deque[float]:
        times = self._times.setdefault(user_id, deque())
        while times and times[0] <= time.monotonic() - self.window_s:
            times.popleft()
        return times

    def recent(self, user_id: int) -> int:
        """The member ``user_id``'s refusals in the window."""
        with self._lock:
            return len(self._recent(user_id))

    def begin(self, user_id: int) -> bool:
        """A check of the member ``user_id``'s job starting, unless their refusals in the window and
        their checks running reach :attr:`limit` (False: no check, nothing counted); each True
        is followed by one :meth:`end`."""
        with self._lock:
            running = self._running.get(user_id, 0)
            if len(self._recent(user_id)) + running >= self.limit:
                return False
            self._running[user_id] = running + 1
            return True

    def end(self, user_id: int, refused: bool) -> None:
        """The member ``user_id``'s check that :meth:`begin` started has ended, ``refused`` or not."""
        with self._lock:
            self._running[user_id] -= 1
            if not self._running[user_id]:
                del self._running[user_id]
        if refused:
            self.count(user_id)

    def count(self, user_id: int) -> None:
        """One refusal of the member ``user_id``'s job, now."""
        with self._lock:
            self._recent(user_id).append(time.monotonic())


def runs_study(command: click.Command | None) -> bool:
    """Whether a job whose command line runs ``command`` (``jobcheck.check_command``'s answer: the
    command as resolved on the server's plugins, None where the job only prints a help) runs a
    study, which the check at submit then checks: deepseek-enterprise's ``tune``. Not ``tune
    --help`` (it prints its help and succeeds, accepted like any command's help), nor another
    plugin's command of that name (its own checks are its own)."""
    from deepseek_enterprise.tune.cli import tune

    return command is tune


def lays_out_default(executor: Any) -> bool:
    """Whether the jobs of a server whose executor is ``executor`` (None: none runs jobs) start in
    the default layout (``jobpaths.at_start``), which :func:`study_refusal` lays out."""
    from deepseek_enterprise.service.executor_base import Executor

    return executor is None or type(executor).at_start is Executor.at_start


def local_limits(executor: Any, origin: str) -> Detection | None:
    """The limits a study check runs under on a server whose executor is ``executor`` (None: none
    runs jobs, rlimits that hold no job): its ``Executor.local_limits``, the local executor's jobs'
    own; None when that method breaks its contract (logged: the job checks its study when it runs)."""
    from deepseek_enterprise.service.executor_calls import ExecutorBroke, call_executor

    if executor is None:
        return Detection(None, "no executor runs jobs", holds_jobs=False)
    try:
        return call_executor(executor, origin, "local_limits", allowed=())  # type: ignore[return-value]
    except ExecutorBroke as exc:
        log.warning("tune job's study check left to the job: %s", exc)
        return None


def study_refusal(argv: list[str], config: str | None, files: Mapping[str, str], plugin_env: Mapping[str, str],
                  memory_bytes: int | None = None, cpu_seconds: int | None = None, cpus: float | None = None,
                  limits: Detection | None = None, *, tenant: str) -> str | None:
    """The line a ``tune`` job of the tenant ``tenant`` (``argv``: its command line after
    ``deepseek``; its config.toml text and files) would be refused with by its study's check
    before the first trial, run in a child process in the job's workspace laid out (module
    docstring) with ``plugin_env`` (the server's plugin settings) and the job's limits (its
    tenant's ``memory_bytes``, ``cpu_seconds`` and ``cpus`` quotas, None: none; the CPU time at
    most :data:`CHILD_TIMEOUT_S`) applied as ``limits`` says (:func:`local_limits`; None: rlimits
    that hold no job); the line :func:`_short_of_address_space` gives when the child ran out of
    its ``RLIMIT_AS``; None when it passes, the child gives no verdict or no slot came free in
    :data:`SLOT_WAIT_S`."""
    if not _slots.acquire(timeout=SLOT_WAIT_S):
        log.warning("tune job's study check found no free slot in %.0f s (%d checks running); the job checks it "
                    "when it runs", SLOT_WAIT_S, AT_ONCE)
        return None
    try:
        return _checked(argv, config, files, plugin_env, memory_bytes, cpu_seconds, cpus,
                        limits or Detection(None, "no executor limits given", holds_jobs=False), tenant)
    finally:
        _slots.release()


def _checked(argv: list[str], config: str | None, files: Mapping[str, str], plugin_env: Mapping[str, str],
             memory_bytes: int | None, cpu_seconds: int | None, cpus: float | None,
             limits: Detection, tenant: str) -> str | None:
    """:func:`study_refusal`'s child run, once it holds a slot."""
    from deepseek.parsing import read_tail
    from deepseek_enterprise.service.executor import LocalExecutor

    with tempfile.TemporaryDirectory(prefix="deepseek-study-check-") as folder:
        ws = Path(folder) / "workspace"  # beside the child's output files, which are not the job's
        (ws / "tmp").mkdir(parents=True)
        for name, body in {**files, **({"config.toml": config} if config is not None else {})}.items():
            (ws / name).write_bytes(body.encode("utf-8"))  # as the executor writes it (durable.write_text)
        env = LocalExecutor.environment(ws, [], None, plugin_env=plugin_env)
        cpu = int(CHILD_TIMEOUT_S) if cpu_seconds is None else min(cpu_seconds, int(CHILD_TIMEOUT_S))
        cg = limits.cgroups
        cgroup = f"check-{os.getpid()}-{next(_checks)}"
        outputs = (Path(folder) / "stdout", Path(folder) / "stderr")
        unstarted = ""
        try:
            procs = None if cg is None else cg.create(cgroup, memory_bytes, cpus) / "cgroup.procs"
            code = _run([sys.executable, *CHILD_ARGS, *argv], ws, env, memory_bytes, cpu, procs, outputs)
        except proclimits.LimitsRefused as exc:  # nothing of the child ran: its exec may have been out of memory
            code, unstarted = None, str(exc)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("tune job's study check gave no verdict (%s); the job checks it when it runs", exc)
            return None
        finally:
            if cg is not None:
                if cg.oom_kills(cgroup):
                    log.warning("tune job's study check was killed at its memory limit (memory-bytes %s, cgroup "
                                "%s memory.max)", memory_bytes, cg.path(cgroup))
                cg.remove(cgroup)
        out, err = (read_tail(path, OUTPUT_TAIL) for path in outputs)
    err = (err + "\n" + unstarted).strip()
    last = err.splitlines()[-1] if err else ""
    if memory_bytes is not None and cg is None and code != 0 and any(s in last for s in OUT_OF_ADDRESS_SPACE):
        return _short_of_address_space(tenant, memory_bytes, limits, last)
    return _verdict(code, out, err)


def _run(argv: list[str], ws: Path, env: Mapping[str, str], memory_bytes: int | None, cpu_seconds: int,
         cgroup_procs: Path | None, outputs: tuple[Path, Path]) -> int:
    """The child run in ``ws`` held to its limits (``proclimits``), its stdout and stderr written
    to the files ``outputs``; its exit code (negative: the signal that ended it). Killed past
    :data:`CHILD_TIMEOUT_S` (``TimeoutExpired``) or once a file holds more than
    :data:`OUTPUT_BYTES` (``OSError``), measured every :data:`POLL_S`."""
    with open(outputs[0], "wb") as out, open(outputs[1], "wb") as err:
        proc = proclimits.spawn(argv, memory_bytes, cpu_seconds, cgroup_procs, cwd=ws, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        with proc:
            deadline = time.monotonic() + CHILD_TIMEOUT_S
            while True:
                try:
                    return proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    wrote = max(os.fstat(f.fileno()).st_size for f in (out, err))
                    if wrote <= OUTPUT_BYTES and time.monotonic() < deadline:
                        continue
                proc.kill()
                proc.wait()
                if wrote > OUTPUT_BYTES:
                    raise OSError(f"it wrote more than {OUTPUT_BYTES} bytes of output, and was killed")
                raise subprocess.TimeoutExpired(argv, CHILD_TIMEOUT_S)


def _short_of_address_space(tenant: str, memory_bytes: int, limits: Detection, why: str) -> str | None:
    """For a child stopped by its ``RLIMIT_AS`` of the tenant's ``memory_bytes`` (``why``: the
    last line it printed, :data:`OUT_OF_ADDRESS_SPACE`): where the server's jobs run under the
    same limits (``limits.holds_jobs``: the local executor without cgroup v2), the job could not
    run either, and the line that says so and how to fix it is its refusal; elsewhere (its jobs
    run on other machines, under their cluster's limits) the check could not run here, and the
    job checks its study when it runs (None, logged)."""
    line = (f"tenant {tenant!r}: memory-bytes {memory_bytes} is too small for a tune job on this server, "
            f"which holds each process of a job to it as address space (RLIMIT_AS; cgroup v2 not used: "
            f"{limits.reason}): the job's study check ran out of it ({clipped_words(one_line(_names_only(why)))}), and "
            f"importing torch alone maps about 3 GB; a platform admin raises it (deepseek tenants quota {tenant} "
            "--memory-bytes N) or runs the server where cgroup v2 can be written (--cgroup), which limits "
            "resident memory instead")
    if limits.holds_jobs:
        return line
    log.warning("tune job's study check could not run under its limits; the job checks it when it runs "
                "(its jobs are not held so): %s", line)
    return None


_FOLDERS = re.compile(r"(?<![^\s'\"(])/(?:[^\s/:'\"]+/)*(?=[^\s/:'\"])")
"""The folders of an absolute path that starts a word of a message (at its start, after a space,
a quote or a parenthesis), up to its last name."""


def _names_only(message: str) -> str:
    """``message`` with each absolute path cut to its last name: the server's folders (its
    interpreter's in the loader's ``.../bin/python: error while loading shared libraries: ...``
    and limitexec's ``... could not be run: ...``, its libraries') are not the tenant's to read."""
    return _FOLDERS.sub("", message)


def _verdict(code: int | None, out: str, err: str) -> str | None:
    """The child's refusal line from the last line of its output ``out``, read like user input
    (None: it passed, or gave nothing that is a verdict: logged with its exit ``code`` and the end
    of its stderr ``err``)."""
    lines = out.strip().splitlines()
    try:
        verdict = json.loads(lines[-1]) if code == 0 and lines else None
    except ValueError:
        verdict = None
    refused = verdict.get("refused", "") if isinstance(verdict, dict) else ""
    if refused is None or (isinstance(refused, str) and refused.strip() and "\n" not in refused):
        return refused
    log.warning("tune job's study check gave no verdict (exit code %s: %s); the job checks it when it runs",
                code, err[-300:])
    return None


def main(argv: list[str]) -> int:
    """The child: ``deepseek ARGV`` (a ``tune`` command line) parsed as ``jobcheck`` parses it, its
    study checked, the verdict printed (module docstring). It imports torch first, unguarded: the
    check builds configs with it, and under an ``RLIMIT_AS`` too small for it the import's own
    error is the child's last line (:data:`OUT_OF_ADDRESS_SPACE`), not a plugin's that failed to
    load."""
    import torch  # noqa: F401

    from deepseek.plugins.host import get_host
    from deepseek_enterprise.service.jobcheck import JobRefused, check_parsed
    from deepseek_enterprise.tune.cli import check_before_trials, tune_setup

    host = get_host()  # the job's: the plugin settings of its environment

    def check(ctx: click.Context) -> None:
        if not runs_study(ctx.command):
            return  # another plugin's command of that name: its own checks are its own
        p = ctx.params
        inputs, tuner = tune_setup(host, p["study_name"], p["objective"], p["tuner_name"], p["config_file"],
                                   p["space_file"])
        check_before_trials(host, inputs, tuner, p["config_file"], p["baseline"])

    try:
        check_parsed(argv, host, check)
    except JobRefused as exc:
        print(json.dumps({"refused": str(exc)}))
    else:
        print(json.dumps({"refused": None}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
