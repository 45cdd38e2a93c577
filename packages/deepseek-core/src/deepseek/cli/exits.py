"""How the process of a ``deepseek`` command ends (:func:`deepseek.cli.root.main`'s last step, and
``deepseek launch``'s workers'): the exit status of a ``SystemExit`` (:func:`exit_status`), and the
exits past the interpreter's shutdown of a rank (:func:`leave_rank`), of a job's launcher
(:func:`leave_launcher`) and of a failed rank (:func:`exit_now`). Only the standard library."""

from __future__ import annotations

import os
import sys


def exit_status(code: object) -> int:
    """The exit status of ``sys.exit(code)``: None is 0, an int itself, anything else (a message) 1."""
    return code if isinstance(code, int) else 0 if code is None else 1


def leave_rank(code: int) -> None:
    """End a rank of a multi-process job with ``code``: Python's exit handlers run for a rank that
    succeeded, then :func:`exit_now` skips the interpreter's shutdown. (A successful rank left
    through the shutdown could abort in gloo's destructors too, seen once in CI: ``torchrun -m
    deepseek train`` of a plugin's all-reduce strategy, rank 1 SIGABRT after its last step.)"""
    if code == 0:
        import atexit

        atexit._run_exitfuncs()  # private: see leave_launcher
    exit_now(code)


def leave_launcher(code: int) -> None:
    """End the process of a job's launcher with ``code``, past the interpreter's shutdown: it
    waits for its other threads and runs Python's exit handlers, as that shutdown would, then
    :func:`exit_now`. What it skips is the garbage collection of every module of a process that
    imported torch and its elastic agent, 2.5-3.8 s measured after the job's report was printed
    (2 gloo CPU workers on a loaded 2-core machine), while the launcher had nothing left to do: its
    workers were waited for and its temp folder (and lock) removed before it printed."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    # atexit._run_exitfuncs() is private (CPython's; it runs the handlers and clears them, so the
    # shutdown, were it reached, would not run them twice): the module has no public call that runs
    # the handlers without the interpreter's shutdown after them, and that shutdown is what this
    # skips. The handlers are the process's (logging's, torch's, a user script's): they must run,
    # once, as at any exit, and os._exit alone would drop them. test_rank_exit.py checks they run.
    atexit._run_exitfuncs()
    exit_now(code)


def exit_now(code: int) -> None:
    """End a failed rank with ``code`` without the interpreter's shutdown: its error is printed
    and its process group torn down, and what is left to destroy at exit (torch's and gloo's C++
    objects, in no set order) could still abort (``terminate called without an active
    exception``, 1 exit in 5 on a refused resume under fsdp), so that the launcher reported
    SIGABRT instead of the rank's exit code 2."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001,S110 - a closed stream has nothing left to say
            pass
    os._exit(code)
