"""Stopping a run on request: SIGTERM and SIGUSR1 (what Slurm and Kubernetes send before they
preempt a job) make the trainer finish the step in progress, write a checkpoint and exit with
:data:`EXIT_PREEMPTED`, so that the same command with ``--resume`` continues bit-exactly.

- :class:`StopSignals` installs the handlers for the span of ``Trainer.fit`` (in the main thread
  only; the previous handlers come back after). A handler only records the signal and starts the
  grace timer; the trainer acts at the next step boundary.
- At every step boundary all ranks all-reduce the flag (with ``trainer.should_stop``) together:
  one host-side all-reduce (``Strategy.any_rank``; nothing for one process). Every rank therefore
  stops after the same step and the checkpoint is whole, even when the signal reached only some
  ranks, or reached them during different steps.
- A callback's ``trainer.should_stop`` at the same step wins: the run is complete (exit 0, its
  checkpoint records the stop, a resume trains nothing), as a signal after the last step is absorbed.
- Grace: ``train.preempt_grace_s`` seconds after the first signal a process that is still running
  prints one line and exits with :data:`EXIT_PREEMPTED` at once, without the new checkpoint. The
  last complete checkpoint stays, and what the interrupted save left is cleaned when the run is
  resumed (:mod:`deepseek.training.checkpoint_dirs`). Set it a little below the time the scheduler
  grants between its signal and its SIGKILL.
- Repeated signals change nothing (Slurm may signal the workers and ``deepseek launch`` alike,
  and the launcher forwards what it receives).
- SIGINT (Ctrl-C) is left alone: ``KeyboardInterrupt`` stops the run at once, and a checkpoint
  being written is removed, never committed half-written.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, TypeVar

EXIT_PREEMPTED = 75
"""Exit code of a run that stopped on SIGTERM / SIGUSR1 (``EX_TEMPFAIL`` of sysexits.h: try again
later). A requeue script resumes the run when it sees it; ``deepseek launch`` exits with it too."""

STOP_SIGNALS = ("SIGTERM", "SIGUSR1")
"""Signals that ask a run to stop after the current step (those this platform has)."""

_Scope = TypeVar("_Scope", bound="SignalScope")


class SignalScope:
    """Context manager: handlers for :data:`STOP_SIGNALS` for the span of the block (installed
    in the main thread only; the previous ones come back after). Records the first signal and,
    from it, runs :meth:`on_deadline` after ``deadline_s`` seconds in a daemon timer, cancelled
    when the block ends; a signal the scope around it recorded already is taken over on entry, its
    deadline counted from when it came. Subclasses say what a signal and the deadline do."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = float(deadline_s)
        self.received: str | None = None
        """Name of the first stop signal this process received."""
        self.received_at: float | None = None
        """``time.monotonic()`` when it arrived."""
        self._previous: dict[int, Any] = {}
        self._timer: threading.Timer | None = None

    def __enter__(self: _Scope) -> _Scope:
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                number = getattr(signal, name, None)
                if number is not None:
                    self._previous[number] = signal.signal(number, self._handle)
        for handler in self._previous.values():  # a scope around this one that took a signal already
            outer = getattr(handler, "__self__", None)  # (the console entry's, ``deepseek train``'s): it stands
            if self.received is None and isinstance(outer, SignalScope) and outer.received is not None:
                # the deadline counts from the signal, as the scheduler's time to its SIGKILL does
                self._handle(getattr(signal, outer.received), None, at=outer.received_at)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}
        if self._timer is not None:
            self._timer.cancel()

    def _handle(self, number: int, frame: FrameType | None, *, at: float | None = None) -> None:
        self.on_signal(number)
        if self.received is None:
            self.received = signal.Signals(number).name
            self.received_at = time.monotonic() if at is None else at  # ``at``: a signal taken over, when it came
            left = max(0.0, self.deadline_s - (time.monotonic() - self.received_at))
            self._timer = threading.Timer(left, self.on_deadline)
            self._timer.daemon = True
            self._timer.start()

    def on_signal(self, number: int) -> None:
        """Every stop signal, repeats included (in the main thread, between bytecodes)."""

    def on_deadline(self) -> None:
        """``deadline_s`` after the first signal, unless the block ended (in the timer thread)."""


EARLY_SIGNAL_S = 3600.0
"""The timer of :func:`early_signals`' scope (it does nothing when it fires)."""


def early_signals() -> SignalScope:
    """The scope ``deepseek train`` and ``deepseek launch`` hold from their start (and the console
    entry point before them, :func:`deepseek.cli.main.main`, from before click and the plugins are
    imported): a stop signal before the trainer (or the launcher's workers) take the signals, while
    torch is imported and the config read, is recorded, not a death by the signal. A scope entered
    inside takes it over (:class:`SignalScope`); the trainer's :class:`StopSignals` with the grace
    left since it came; the launcher starts no worker (exit code 75)."""
    return SignalScope(EARLY_SIGNAL_S)


class StopRequested(BaseException):
    """A stop signal came while a ``deepseek run`` script ran outside :func:`deepseek.fit`
    (:class:`ScriptSignals`). A ``BaseException``, as ``KeyboardInterrupt`` is: the script's
    ``except Exception`` does not take it, its ``finally`` blocks and ``with`` exits run."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class ScriptSignals(SignalScope):
    """``deepseek run``'s scope for the span of its script. While :attr:`armed` (the script's code
    runs), a stop signal raises :class:`StopRequested` in the main thread, once: outside
    ``deepseek.fit`` the script has nothing to save, and the command ends with
    :data:`EXIT_PREEMPTED` and one line. Inside ``fit`` the trainer's :class:`StopSignals` holds
    the signals (this scope's handler comes back when it ends), so a run stops after its step with
    a checkpoint and ``fit`` returns. A signal the console entry recorded before the command
    (:func:`early_signals`) is taken over on entry as :attr:`received`: the script does not start."""

    def __init__(self) -> None:
        super().__init__(EARLY_SIGNAL_S)
        self.armed = False
        self._pid = os.getpid()

    def on_signal(self, number: int) -> None:
        if os.getpid() != self._pid:  # a process the script forked (multiprocessing's): Python's default,
            signal.signal(number, signal.SIG_DFL)  # as under python SCRIPT (Process.terminate() ends it, -15)
            os.kill(os.getpid(), number)
            return
        if self.armed:
            self.armed = False  # a repeat (Slurm signals the workers and the launcher alike) is only recorded
            raise StopRequested(signal.Signals(number).name)


def script_stopped_line(signal_name: str, *, started: bool) -> str:
    """The line ``deepseek run`` prints (stderr) when a stop signal ended it outside ``deepseek.fit``
    (``started``: while the script ran; else before it started)."""
    when = "while the script ran outside deepseek.fit" if started else "before the script started"
    return f"stopped: {signal_name} {when}; nothing to save; run the same command again"


class StopSignals(SignalScope):
    """Stop requests by signal for the span of one run (the trainer's ``fit``).

    ``grace_s``: seconds from the first signal until the process gives up stopping cleanly:
    ``on_expire(message)`` (default: the message on stderr, then ``os._exit(EXIT_PREEMPTED)``).
    """

    def __init__(self, grace_s: float, *, on_expire: Callable[[str], None] | None = None) -> None:
        super().__init__(grace_s)
        self._on_expire = on_expire or _exit_now

    def on_deadline(self) -> None:
        self._on_expire(
            f"error: stopping on {self.received} took longer than train.preempt_grace_s = {self.deadline_s:g} s; "
            "exiting without a new checkpoint (--resume continues from the last complete one)"
        )

    def describe(self) -> str:
        """What stopped the run, for messages (``SIGTERM``, or a signal seen by another rank)."""
        return self.received or "a stop signal sent to another rank"


def _exit_now(message: str) -> None:
    """End the process from the timer thread: no clean-up runs, the run-folder lock goes with it."""
    os.write(2, (message + "\n").encode())
    os._exit(EXIT_PREEMPTED)


def stopped_line(signal_name: str, step: int, checkpoint: str | None, run_dir: str) -> str:
    """The one line ``deepseek train`` prints (stderr) when a run stopped on request (rank 0's:
    under ``deepseek launch`` the job's last line, shown once, as rank 0's). ``checkpoint``: the checkpoint of ``step``, or ``None`` when no step
    was trained in this session (nothing new to save). Stopped at step 0 the folder holds no
    checkpoint: the same command (without ``--resume``) starts the run again in it."""
    if checkpoint is None and step == 0:
        return (f"stopped: {signal_name} before the first step; nothing to save; run the same command again "
                f"(without --resume: {run_dir} holds no checkpoint)")
    saved = f"checkpoint {checkpoint}" if checkpoint is not None else "nothing new to save"
    return f"stopped: {signal_name} after step {step}; {saved}; continue with --resume {run_dir}"
