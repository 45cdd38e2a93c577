"""``deepseek tune`` on a stop signal: SIGTERM or SIGUSR1 (what Slurm and Kubernetes send before
they preempt a job) stops the study as Ctrl-C does, then the command exits with
:data:`~deepseek.training.preemption.EXIT_PREEMPTED` (75), so a requeue script reruns it.

The first signal raises :class:`StudyStopped` (a ``KeyboardInterrupt``) in the main thread: the
trial in progress has its training process stopped, is recorded failed with ``interrupted``
(``interrupted (SIGTERM)``) and its values are queued to run again; finished trials are kept in
the study's storage. The same command continues the study. Repeated signals change nothing.
"""

from __future__ import annotations

import signal

from deepseek.training.preemption import EARLY_SIGNAL_S, SignalScope


class StudyStopped(KeyboardInterrupt):
    """A stop signal reached ``deepseek tune`` (``signal_name``: ``SIGTERM`` or ``SIGUSR1``)."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class StudySignals(SignalScope):
    """The stop signals for the span of a study: the first raises :class:`StudyStopped`."""

    def __init__(self) -> None:
        super().__init__(EARLY_SIGNAL_S)  # no deadline: the study stops at once
        self._raised = False

    def on_signal(self, number: int) -> None:
        if not self._raised:  # a repeat must not interrupt the recording of the stopped trial
            self._raised = True
            raise StudyStopped(signal.Signals(number).name)
