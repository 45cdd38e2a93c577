"""A ``tune`` job's study check at submit, run in a child process: what ``deepseek tune`` checks
before its first trial and the server's own checks (``jobcheck``) cannot, since it builds configs
and so imports torch, which the server's process never does: the base config and every trial
config its space reaches built and validated (the components' own keys: ``model.d_modle``), the
tuner's own rules for them and for the objective (the ``training`` tuner's ``data.eval_batches =
0``), a ``model.*`` entry's model built on the meta device
(:func:`deepseek_enterprise.tune.cli.check_before_trials`).

:func:`study_refusal` runs it once the job passed every other check of its submit (``jobcheck``,
the role, the quotas and ``jobpaths``: a job naming a path outside its tenant's folder never
reaches the child, which reads the files the config names). It lays the job's workspace out in a
private temporary folder as the job will find it at its start (the default layout,
``jobpaths.at_start``: its ``config.toml``, its files, an empty ``tmp/``) and runs
``python -I -m deepseek_enterprise.service.studycheck ARGS`` there, ``ARGS`` the job's command
line (``jobcheck.job_argv``): the server's interpreter, isolated as the job's is, with the job's
environment (``LocalExecutor.environment``: the server's plugin settings, ``HOME`` and
``TMPDIR`` in that folder, no GPU) and its working folder, so a relative path (a dataset's
``path``, a DeepSpeed file) is read where the job reads it and an absolute one in the tenant's
folder as it is now. The child (:func:`main`) parses the line as ``jobcheck`` does, runs
``deepseek tune``'s checks before its study folder (:func:`deepseek_enterprise.tune.cli.tune_setup`)
and the study's check, and prints its verdict as its last line of output, a JSON object:
``{"refused": LINE}`` (the line the job would print) or ``{"refused": null}``.

Cost: one interpreter start and torch import per ``tune`` submit that passed the other checks,
4.0-4.5 s of CPU and 750 MB resident at its peak, measured (docs/service.md); at most
:data:`AT_ONCE` children run at a time, a submit waits for its turn. What bounds it: the child
runs under the job's own rlimits (its tenant's quota, as the executor applies them to a job's
processes: ``RLIMIT_CPU`` ``cpu_seconds``, at most :data:`CHILD_TIMEOUT_S` whatever the quota, and
``RLIMIT_AS`` ``memory_bytes``); and the checks that refused a member's jobs count toward
:class:`Refusals` (:data:`REFUSALS_PER_HOUR` per member): past it, that member's ``tune`` jobs are
checked when they run, like every job they then count toward the tenant's queue quotas. A server
run with ``--no-study-check`` (``Service.study_check``) starts no child at all. A child that ends
otherwise (an exit code, killed at a limit, no verdict, over :data:`CHILD_TIMEOUT_S`) leaves the
check to the job, with a warning in the server's log: the job is accepted. So does a server whose
executor lays workspaces out otherwise (it overrides ``Executor.at_start``): what the check would
read there is the executor's to say.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("deepseek.server")

CHILD_TIMEOUT_S = 120.0
"""How long a study check may take (an interpreter start, torch imported, configs built)."""
AT_ONCE = 2
"""Study checks running at once; a submit beyond them waits for one to end."""
_slots = threading.BoundedSemaphore(AT_ONCE)
REFUSALS_PER_HOUR = 20
"""Study checks that may refuse one member's ``tune`` jobs per hour before that member's ``tune``
jobs are checked when they run instead (:class:`Refusals`)."""
UNREAD_OPTIONS = ("--out", "--storage")
"""``deepseek tune``'s options the study check never reads (the study's folder and storage are
checked when the job runs): an absolute path there leaves the check at submit as it is."""


class Refusals:
    """Per member, the study checks that refused their ``tune`` jobs in the last ``window_s``
    seconds (this server's memory: a restart forgets them). A refused job is no job, so no quota
    counts it; this does: a member who reached ``limit`` has their ``tune`` jobs accepted without
    the check at submit, checked when they run (queued, so the tenant's ``queued_jobs`` and
    ``running_jobs`` count them), until older refusals leave the window."""

    def __init__(self, limit: int = REFUSALS_PER_HOUR, window_s: float = 3600.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._times: dict[int, deque[float]] = {}
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

    def spent(self, user_id: int) -> bool:
        """Whether the member ``user_id`` reached :attr:`limit` refusals in the window."""
        return self.recent(user_id) >= self.limit

    def count(self, user_id: int) -> None:
        """One refusal of the member ``user_id``'s job, now."""
        with self._lock:
            self._recent(user_id).append(time.monotonic())


def lays_out_default(executor: Any) -> bool:
    """Whether the jobs of a server whose executor is ``executor`` (None: none runs jobs) start in
    the default layout (``jobpaths.at_start``), which :func:`study_refusal` lays out."""
    from deepseek_enterprise.service.executor_base import Executor

    return executor is None or type(executor).at_start is Executor.at_start


def study_refusal(argv: list[str], config: str | None, files: Mapping[str, str], plugin_env: Mapping[str, str],
                  memory_bytes: int | None = None, cpu_seconds: int | None = None) -> str | None:
    """The line a ``tune`` job (``argv``: its command line after ``deepseek``; its config.toml
    text and files) would be refused with by its study's check before the first trial, run in a
    child process in the job's workspace laid out (module docstring) with ``plugin_env`` (the
    server's plugin settings) and the job's limits (its tenant's ``memory_bytes`` and
    ``cpu_seconds`` quotas, None: none; the CPU time at most :data:`CHILD_TIMEOUT_S`); None when
    it passes or the child gives no verdict."""
    from deepseek_enterprise.service.executor import LocalExecutor, process_limits

    with _slots, tempfile.TemporaryDirectory(prefix="deepseek-study-check-") as folder:
        ws = Path(folder)
        (ws / "tmp").mkdir()
        for name, body in {**files, **({"config.toml": config} if config is not None else {})}.items():
            (ws / name).write_bytes(body.encode("utf-8"))  # as the executor writes it (durable.write_text)
        env = LocalExecutor.environment(ws, [], None, plugin_env=plugin_env)
        cpu = int(CHILD_TIMEOUT_S) if cpu_seconds is None else min(cpu_seconds, int(CHILD_TIMEOUT_S))
        try:
            done = subprocess.run([sys.executable, "-I", "-m", __name__, *argv], cwd=ws, env=env, capture_output=True,
                                  text=True, errors="replace", timeout=CHILD_TIMEOUT_S, stdin=subprocess.DEVNULL,
                                  check=False, preexec_fn=process_limits(memory_bytes, cpu, None))
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("tune job's study check gave no verdict (%s); the job checks it when it runs", exc)
            return None
    return _verdict(done)


def _verdict(done: subprocess.CompletedProcess[str]) -> str | None:
    """The child's refusal line from its last line of output, read like user input (None: it passed,
    or gave nothing that is a verdict: logged)."""
    lines = done.stdout.strip().splitlines()
    try:
        verdict = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    except ValueError:
        verdict = None
    refused = verdict.get("refused", "") if isinstance(verdict, dict) else ""
    if refused is None or (isinstance(refused, str) and refused.strip() and "\n" not in refused):
        return refused
    log.warning("tune job's study check gave no verdict (exit code %s: %s); the job checks it when it runs",
                done.returncode, done.stderr.strip()[-300:])
    return None


def main(argv: list[str]) -> int:
    """The child: ``deepseek ARGV`` (a ``tune`` command line) parsed as ``jobcheck`` parses it, its
    study checked, the verdict printed (module docstring)."""
    import click

    from deepseek.plugins.host import get_host
    from deepseek_enterprise.service.jobcheck import JobRefused, check_parsed
    from deepseek_enterprise.tune.cli import check_before_trials, tune, tune_setup

    host = get_host()  # the job's: the plugin settings of its environment

    def check(ctx: click.Context) -> None:
        if ctx.command is not tune:
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
