"""Stop requests that reach the launcher: SIGTERM and SIGUSR1 are forwarded to every local
worker, which then stop together after the current step with a checkpoint (see
:mod:`deepseek.training.preemption`), and the launcher waits for them.

torchrun's agent would treat SIGTERM as "stop the workers now" (it passes the signal on and kills
them 30 s later), so the runner leaves SIGTERM out of the agent's signals
(:data:`AGENT_SIGNALS`) and :class:`StopForwarder` handles SIGTERM and SIGUSR1 instead; SIGINT
(Ctrl-C), SIGHUP and SIGQUIT still stop the job at once through the agent.

Workers are found by their heartbeats (``rank-N.json`` carries the pid; a worker writes one as its
very first action). A worker that had not written one yet when the signal came (it was starting:
the agent had spawned it, its interpreter was loading) gets the signal as soon as its heartbeat
appears: until the block ends, a thread forwards the last signal to every worker not sent it yet.
Without it such a request was lost, and the job trained on to its end (or to the scheduler's
SIGKILL). Workers still running ``grace_s + margin_s`` seconds after the first signal are killed
(SIGKILL), so a job never outlives its stop request for long; their own grace
(``train.preempt_grace_s``) ends them first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from types import TracebackType

from deepseek.training.preemption import SignalScope
from deepseek_pro.launch.heartbeat import is_running_child, read_beats

AGENT_SIGNALS = "SIGINT,SIGHUP,SIGQUIT"
"""The signals the agent handles (``LaunchConfig.signals_to_handle``): its defaults but SIGTERM."""
KILL_MARGIN_S = 10.0
"""Seconds past the workers' own grace before the launcher kills them."""
FOLLOW_S = 0.1
"""How often, after a stop signal, the launcher looks for workers that started since."""


class StopForwarder(SignalScope):
    """Context manager around the agent's run: forwards stop signals to the workers and kills
    those still running ``grace_s + margin_s`` seconds after the first."""

    def __init__(self, heartbeat_dir: str | os.PathLike[str], grace_s: float, *, margin_s: float = KILL_MARGIN_S) -> None:
        super().__init__(float(grace_s) + margin_s)
        self.heartbeat_dir = Path(heartbeat_dir)
        self.killed: list[int] = []
        """Pids of workers killed because they outlived the deadline."""
        self._signal: int | None = None  # the last stop signal, for workers that start after it
        self._sent: set[int] = set()
        self._done = threading.Event()
        self._follower: threading.Thread | None = None

    def workers(self) -> list[int]:
        """Pids of this node's running workers (those that wrote a heartbeat and are still
        children of this process, so a pid the system reused is never signalled)."""
        return sorted(b.pid for b in read_beats(self.heartbeat_dir).values() if is_running_child(b.pid, unknown=True))

    def on_signal(self, number: int) -> None:
        self._signal = number
        for pid in self.workers():
            _signal(pid, number)
            self._sent.add(pid)
        if self._follower is None:
            self._follower = threading.Thread(target=self._follow, name="deepseek-stop-forwarder", daemon=True)
            self._follower.start()

    def _follow(self) -> None:
        """Forward the stop signal to each worker whose heartbeat appears after it (in a thread,
        until the block ends)."""
        while not self._done.wait(FOLLOW_S):
            for pid in self.workers():
                if pid not in self._sent and self._signal is not None:
                    _signal(pid, self._signal)
                    self._sent.add(pid)

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._done.set()
        super().__exit__(kind, value, tb)

    def on_deadline(self) -> None:
        for pid in self.workers():
            if _signal(pid, signal.SIGKILL):
                self.killed.append(pid)


def _signal(pid: int, number: int) -> bool:
    """Send ``number`` to ``pid``; False when it is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, number)
        return True
    return False
