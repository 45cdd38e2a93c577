"""Shared by every test session: under pytest-xdist (two workers on the 2-core CI machine) each
worker computes on one intra-op thread, so the two do not oversubscribe the cores. Subprocesses
the tests start keep their own defaults (the CLI's thread rules are what those tests check).

It also holds the ``past_fifo`` fixture (a read that could wait on a FIFO fails its test, not hangs
it), the ``one_thread`` fixture the in-process tests of tiny models ask for, and registers
the contract suites' ``--contract-data`` option (options are read before
``tests/contract/conftest.py`` loads when the whole ``tests`` folder runs); the suites read it
there (docs/plugins.md section 9)."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--contract-data", metavar="JSON|FILE", default=None,
        help="tests/contract: [data] keys the contract suites make your datasets with, a JSON object of dataset "
             "name -> keys or the path of a JSON file holding one, e.g. '{\"acme.rows\": {\"train_rows\": 40}}' "
             "(default: $DEEPSEEK_CONTRACT_DATA)")


def pytest_configure(config: object) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test, the previous count restored after it. Tests of tiny models
    ask for it (``pytestmark = pytest.mark.usefixtures("one_thread")``: core's decoding tests, the
    enterprise in-process multimodal tests): one thread is as fast, and far faster when other jobs
    share the cores. (tests/core/cli overrides it with a session-wide one: its trained run, made
    once for the session, asks for it.)"""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def past_fifo() -> Callable[..., Any]:
    """``past_fifo(fifo, fn)``: ``fn()`` (its value, or its exception raised again) run in a thread;
    when it is not done within ``timeout`` s (a plain open of the FIFO ``fifo`` waits for a writer),
    a writer opened and closed at once ends the wait and the test fails naming the FIFO. A wait
    inside a library that holds the GIL, which no thread of this process can end, ends the test
    process after ``timeout`` + 20 s (exit 1; with ``-s`` every thread's stack is printed)."""

    def call(fifo: Path, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        done: list[Any] = []
        failed: list[BaseException] = []
        # A library that waits holding the GIL (safetensors' safe_open opening a FIFO) stops every
        # thread, this one too: then faulthandler's own thread ends the process (exit 1; its dump
        # of each thread's stack shows with -s), a failed run rather than one that never ends.
        faulthandler.dump_traceback_later(timeout + 20, exit=True, file=sys.__stderr__)

        def run() -> None:
            try:
                done.append(fn())
            except BaseException as exc:  # raised again in the test's thread
                failed.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(timeout)
        waited = thread.is_alive()
        while thread.is_alive():
            with contextlib.suppress(OSError):  # ENXIO: nothing has the FIFO open for reading yet
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            thread.join(0.1)
        faulthandler.cancel_dump_traceback_later()
        if waited:
            pytest.fail(f"waited more than {timeout:g} s on the FIFO {fifo}")
        if failed:
            raise failed[0]
        return done[0]

    return call


@pytest.fixture
def fifo_after_is_file(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """``fifo_after_is_file(target)``: from then on, right after a ``Path.is_file`` check that
    finds ``target`` a file, a FIFO takes its place (the race a check-then-read leaves open);
    pair it with :func:`past_fifo` to fail, not hang, where the read waits on it."""

    def swap(target: Path) -> None:
        real = Path.is_file

        def is_file(self: Path) -> bool:
            answer = real(self)
            if self == target and answer:
                self.unlink()
                os.mkfifo(self)
            return answer

        monkeypatch.setattr(Path, "is_file", is_file)

    return swap
