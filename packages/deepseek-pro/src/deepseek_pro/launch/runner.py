"""Run the workers under torchrun's elastic agent and turn any failure into one clear report.

The agent (``torch.distributed.launcher.api.elastic_launch``) starts ``nproc_per_node`` workers
(``python -u -m deepseek_pro.launch.worker ARGS``), sets ``RANK``/``WORLD_SIZE``/``MASTER_*``, and
when one worker exits non-zero stops the others and raises ``ChildFailedError``. Every worker's
stdout/stderr go to ``<log dir>/<run id>/attempt_0/<local rank>/``; rank 0's are also shown on the
console. A hung worker is found by the heartbeat :class:`~deepseek_pro.launch.heartbeat.Watchdog`,
which kills it so that the agent ends the job the same way. SIGUSR2 to the launcher dumps the stack
of each of its threads to its stderr, as it does a worker's to the worker's log. SIGTERM / SIGUSR1 sent to the
launcher are forwarded to the workers (:mod:`~deepseek_pro.launch.stop`), which stop after the
current step with a checkpoint; the job then ends with :data:`EXIT_PREEMPTED`. Heartbeats and
(by default) logs live in a temp folder (:mod:`~deepseek_pro.launch.jobdir`) removed at the end,
after success, failure or a signal.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepseek.config.schema import TrainConfig
from deepseek.parsing import read_tail
from deepseek.training.launcher_env import PEER_GONE
from deepseek.training.preemption import EXIT_PREEMPTED, SignalScope
from deepseek_pro.launch.env import worker_env
from deepseek_pro.launch.heartbeat import DUMP_SIGNAL, Watchdog
from deepseek_pro.launch.jobdir import create_job_dir, remove_abandoned
from deepseek_pro.launch.rendezvous import register as one_node_rendezvous
from deepseek_pro.launch.stop import AGENT_SIGNALS, StopForwarder

WORKER_MODULE = "deepseek_pro.launch.worker"
TAIL_LINES = 20
TAIL_BYTES = 64 << 10
"""How much of a failed rank's log's end the report reads for its last :data:`TAIL_LINES` lines
(a long run's log has gigabytes)."""
STACK_BYTES = 1 << 20
"""How much of a hung rank's log's end the report searches for the stack it dumped (``faulthandler``:
at most 100 frames of each thread, a few KiB a thread)."""
EXIT_HUNG = 124
MONITOR_INTERVAL_S = 0.1
"""How often the agent polls its workers (torchrun's default): a rank's failure is reported at most
this long after the rank exits (on average half of it: 0.05 s, where 0.5 s made it 0.25 s). Each
poll is a ``waitpid`` per worker and one store query: measured on a 2-core machine, the agent
takes 0.5% of a core at 0.1 s against 0.4% at 0.5 s (0.8% at 0.05 s)."""
RANK_ERROR_PREFIXES = ("error:", "internal error:")
"""How the lines a rank ends with start (``deepseek.cli.root.main``): the launcher's report quotes the last."""


@dataclass(frozen=True)
class LaunchSpec:
    """What ``deepseek launch`` was asked to run."""

    args: tuple[str, ...]
    nproc_per_node: int
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = ""
    rdzv_id: str = ""
    timeout: float = 300.0
    startup_timeout: float = 900.0
    log_dir: str | None = None
    watchdog: bool = True
    verbose: bool = False
    stop_grace: float = TrainConfig.preempt_grace_s
    """Seconds the workers get to stop after SIGTERM / SIGUSR1 (``train.preempt_grace_s``)."""
    plugin_env: Mapping[str, str | None] = field(default_factory=dict)
    """The launcher's plugin settings as ``DEEPSEEK_*`` variables for the workers
    (``PluginSettings.as_env``): what ``deepseek --plugins ... launch`` chose, the workers load."""


@dataclass
class LaunchResult:
    """How the job ended: ``exit_code`` 0, or a one-line ``message`` and the culprit's log tail."""

    exit_code: int
    message: str = ""
    log_path: str = ""
    """The log the tail comes from; empty when the logs were in the removed temp folder."""
    tail: list[str] = field(default_factory=list)
    shown: bool = False
    """The line was already on the console, as the local rank 0 whose output the launcher shows
    wrote it (its bad-input ``error:`` line, its ``stopped:`` line): the launcher does not repeat it."""


def run(spec: LaunchSpec, *, early: SignalScope | None = None) -> LaunchResult:
    """Start the job, wait for it, and report how it ended. ``early``: the launch command's scope
    of stop signals since it started; one it received before the workers would start ends the job
    before any starts (exit code 75: nothing was written, the same command runs it again)."""
    import torch
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if not spec.verbose:
        logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    remove_abandoned()
    dump_armed = _arm_stack_dump()
    job = create_job_dir()
    heartbeat_dir = str(job.heartbeats)
    log_dir = spec.log_dir or str(job.logs)
    changes = {**worker_env(spec.nproc_per_node, cuda=torch.cuda.is_available(), heartbeat_dir=heartbeat_dir),
               **spec.plugin_env}
    saved = _apply_env(changes)
    multi = spec.nnodes > 1 or bool(spec.rdzv_endpoint)
    # Every node of a job must use the same id: the rendezvous keys are prefixed with it.
    run_id = spec.rdzv_id or ("deepseek-job" if multi else uuid.uuid4().hex[:12])
    config = LaunchConfig(
        min_nodes=spec.nnodes,
        max_nodes=spec.nnodes,
        nproc_per_node=spec.nproc_per_node,
        run_id=run_id,
        rdzv_backend="static" if multi else one_node_rendezvous(),
        rdzv_endpoint=spec.rdzv_endpoint if multi else "localhost:0",
        rdzv_configs={"rank": spec.node_rank, "timeout": int(spec.startup_timeout)} if multi else {},
        max_restarts=0,
        monitor_interval=MONITOR_INTERVAL_S,
        logs_specs=DefaultLogsSpecs(log_dir=log_dir, redirects=Std.ALL, tee=Std.ALL, local_ranks_filter={0}),
        log_line_prefix_template="[rank${rank}] ",
        signals_to_handle=AGENT_SIGNALS,
    )
    watchdog = None
    if spec.watchdog:
        watchdog = Watchdog(heartbeat_dir, timeout=spec.timeout, startup_timeout=spec.startup_timeout)
        watchdog.start()
    stop = StopForwarder(heartbeat_dir, spec.stop_grace)
    # around the clean-up too: a stop signal that comes after the workers ended is absorbed, not a death by it
    with stop:
        try:
            if early is not None and early.received is not None:  # until here its handler took the signals
                return LaunchResult(EXIT_PREEMPTED, f"stopped: the launcher received {early.received} before it "
                                                    "started the workers; nothing was written; run the same command "
                                                    "again")
            elastic_launch(config, entrypoint=sys.executable)("-u", "-m", WORKER_MODULE, *spec.args)
            return LaunchResult(0)
        except ChildFailedError as exc:
            logs, failures = _attempt_dir(log_dir, run_id), exc.failures
            report = failure_report(failures, watchdog, lambda r: logs / str(_local(failures, r, spec)) / "stderr.log",
                                    stop_signal=stop.received)
            if spec.log_dir is None:  # the log is removed with the temp folder below
                report.log_path = ""
            return report
        except SignalException as exc:
            return LaunchResult(130, f"launcher received {exc.sigval.name}; all workers were stopped")
        except torch.distributed.DistNetworkError as exc:  # the agent's store could not listen
            if "EADDRINUSE" not in str(exc) and "address already in use" not in str(exc):
                raise
            return LaunchResult(2, f"--rdzv-endpoint {spec.rdzv_endpoint or 'localhost'}: the port is in use (another "
                                   "job or program listens on it); pick another port")
        except RendezvousError as exc:
            return LaunchResult(
                1,
                f"rendezvous at {spec.rdzv_endpoint or 'localhost'} failed ({type(exc).__name__}: {exc}); start "
                f"'deepseek launch' on all {spec.nnodes} nodes with the same --nnodes and --rdzv-endpoint "
                "and distinct --node-rank",
            )
        finally:
            if watchdog is not None:
                watchdog.stop()
            if dump_armed:
                faulthandler.unregister(DUMP_SIGNAL)
            _restore_env(saved)
            job.remove()


def failure_report(
    failures: Mapping[int, Any], watchdog: Watchdog | None, log_of: Callable[[int], Path],
    *, stop_signal: str | None = None,
) -> LaunchResult:
    """One line naming the rank that failed first (or hung) and how, plus its log tail.
    ``failures`` maps global ranks to the agent's ``ProcessFailure``; ``log_of(rank)`` is that
    rank's stderr log; ``stop_signal``: the stop signal the launcher received, if any."""
    if watchdog is not None and watchdog.verdict:
        log = log_of(watchdog.stuck[0].rank)
        return LaunchResult(EXIT_HUNG, watchdog.verdict, str(log), _stack_head(log))
    tails = {rank: _tail(log_of(rank)) for rank in failures}
    stopped = sorted(rank for rank, f in failures.items() if f.exitcode == EXIT_PREEMPTED)
    # A rank that failed on its own (not a peer's loss, not the agent's SIGTERM) makes the job a
    # failure: ranks that exited 75 then were stopped by the agent after it (a `deepseek run`
    # script outside fit ends a SIGTERM with 75), not by a stop request.
    failed = any(f.exitcode != EXIT_PREEMPTED and not _is_secondary(f, tails[r]) for r, f in failures.items())
    if stop_signal or (stopped and not failed):
        return _stop_report(failures, stopped, tails, stop_signal)
    # Failure times have a resolution of one second; within it, a rank that only saw its peer
    # vanish (or was stopped by the agent) is not the root cause.
    rank, first = min(failures.items(), key=lambda kv: (
        kv[1].timestamp, _is_secondary(kv[1], tails[kv[0]]) or kv[1].exitcode == EXIT_PREEMPTED, kv[0]))
    tail = tails[rank]
    if first.exitcode < 0:
        how = f"was killed by signal {first.signal_name()}"
    else:
        how = f"exited with code {first.exitcode}"
    # its own last line: "error: ..." (bad input, a plugin's bug, ...) or core's "internal error: ...",
    # quoted with that prefix (an exception nothing named, e.g. one a built-in strategy's checkpoint write let through)
    said = next((line.strip() for line in reversed(tail) if line.lstrip().startswith(RANK_ERROR_PREFIXES)), "")
    said = said.removeprefix("error:").strip()
    message = f"rank {rank} (pid {first.pid}) {how}{': ' + said if said else ''}; the other ranks were stopped"
    # bad input (exit code 2) that the local rank 0 on the console already said, word for word
    shown = first.exitcode == 2 and bool(said) and any(
        f.local_rank == 0 and f.exitcode == 2 and any(line.strip() == f"error: {said}" for line in tails[r])
        for r, f in failures.items())
    return LaunchResult(2 if first.exitcode == 2 else 1, message, str(log_of(rank)), tail, shown=shown)


def _stop_report(
    failures: Mapping[int, Any], stopped: list[int], tails: Mapping[int, list[str]], stop_signal: str | None,
) -> LaunchResult:
    """The job ended on a stop request: the ``stopped:`` line of the ranks that saved and exited
    (rank 0 prints it), or, when none got that far, what the launcher received. A line the local
    rank 0 wrote word for word is on the console already (the launcher tees its output):
    ``shown``, so the job ends with it once, as rank 0's."""
    said = [line.strip().split("stopped:", 1)[1].strip()
            for rank in stopped for line in tails.get(rank, []) if "stopped:" in line]
    if said:
        message = f"stopped: {said[-1]}"
        shown = any(failures[rank].local_rank == 0 and any(line.strip() == message for line in tails.get(rank, []))
                    for rank in stopped)
        return LaunchResult(EXIT_PREEMPTED, message, shown=shown)
    if stopped:
        return LaunchResult(EXIT_PREEMPTED, f"stopped: rank {stopped[0]} stopped on request")
    return LaunchResult(
        EXIT_PREEMPTED,
        f"stopped: the launcher received {stop_signal}; the workers ended before they could save a checkpoint "
        "(in set-up, or past their grace); --resume continues from the run's last complete checkpoint, "
        "and a run that has none yet starts again with the same command without --resume",
    )


def _is_secondary(failure: Any, tail: list[str]) -> bool:
    """True for a rank that failed because another one did (stopped by the agent, or a peer
    connection broke under it)."""
    if failure.exitcode == -signal.SIGTERM:
        return True
    text = "\n".join(tail)
    return any(phrase in text for phrase in PEER_GONE)


def _attempt_dir(log_dir: str, run_id: str) -> Path:
    """The agent's log folder of this run (``<log_dir>/<run_id>_XXXX/attempt_0``)."""
    found = sorted(Path(log_dir).glob(f"{run_id}_*/attempt_0"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else Path(log_dir)


def _local(failures: Mapping[int, Any], rank: int, spec: LaunchSpec) -> int:
    """Local rank of global ``rank`` (ranks are numbered node by node)."""
    return failures[rank].local_rank if rank in failures else rank % spec.nproc_per_node


def _log_lines(path: Path, size: int) -> list[str]:
    """The non-blank lines of a rank's log's last ``size`` bytes (none when it cannot be read)."""
    try:
        lines = read_tail(path, size).splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip()]


def _tail(path: Path, n: int = TAIL_LINES) -> list[str]:
    return _log_lines(path, TAIL_BYTES)[-n:]


def _stack_head(path: Path, n: int = TAIL_LINES) -> list[str]:
    """A hung rank's log: the stack it dumped on the watchdog's request (``faulthandler``,
    most recent call first) from its top, the thread that handled the request (the main one),
    where the rank waits; the log's last lines when it dumped none. (The dump's last lines are
    its outermost frames, the same for every hang: the CLI's entry point.)"""
    lines = _log_lines(path, STACK_BYTES)
    heads = [i for i, line in enumerate(lines) if line.endswith("(most recent call first):")]
    if not heads:
        return lines[-n:]
    current = [i for i in heads if lines[i].startswith("Current thread")]
    start = (current or heads)[-1]
    return lines[start:start + n]


def _apply_env(changes: Mapping[str, str | None]) -> dict[str, str | None]:
    saved = {k: os.environ.get(k) for k in changes}
    for key, value in changes.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return saved


def _arm_stack_dump() -> bool:
    """Make :data:`DUMP_SIGNAL` (SIGUSR2) dump every thread's stack to the launcher's stderr
    (``faulthandler``, which writes to a file descriptor): ``sys.stderr``'s, else the process's
    descriptor 2 where ``sys.stderr`` has none (replaced in-process: click's ``CliRunner``, a
    notebook); False, the signal left as it is, where neither is open or the platform has no
    SIGUSR2. Registering with a ``sys.stderr`` without a descriptor raised, and the launch failed
    before it started anything."""
    if DUMP_SIGNAL is None:
        return False
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # None, or a stream without one (io.UnsupportedOperation)
        fd = 2
    try:
        os.fstat(fd)
    except OSError:  # closed: nowhere to write a dump
        return False
    faulthandler.register(DUMP_SIGNAL, file=fd, all_threads=True)
    return True


def _restore_env(saved: Mapping[str, str | None]) -> None:
    _apply_env(saved)
