"""The holder a run folder's lock file names is read back like user input: what the holder
writes is shown, anything else (an escape sequence, a 10,000-character host, a time or pid that
is not one) is shown as ``its holder is unreadable``, one line, and never raw."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.arguments import command_line
from deepseek.training.run_lock import (
    LOCK_FILE,
    RunFolderBusy,
    describe_holder,
    live_run_holding,
    try_lock,
)

GOOD = {"pid": 4321, "host": "node-7.cluster", "since": "2026-01-02 03:04:05"}
UNREADABLE = "its holder is unreadable"


def test_what_the_holder_writes_is_shown(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_FILE
    lock.write_text(json.dumps(GOOD))
    assert describe_holder(lock) == "pid 4321 on host node-7.cluster, since 2026-01-02 03:04:05"
    assert describe_holder(tmp_path / "none") == "its pid is not recorded yet"
    lock.write_text("")  # created by try_lock, not written yet
    assert describe_holder(lock) == "its pid is not recorded yet"


def test_a_real_holder_reads_back(tmp_path: Path) -> None:
    from deepseek.training.mixed_precision import Precision
    from deepseek.training.run_lock import lock_run_folder
    from deepseek.training.single import SingleDeviceStrategy, SingleOptions

    held = lock_run_folder(tmp_path, SingleDeviceStrategy(SingleOptions(device="cpu"), precision=Precision("fp32")))
    try:
        text = describe_holder(tmp_path / LOCK_FILE)
        assert text.startswith(f"pid {os.getpid()} on host {socket.gethostname()}, since 20"), text
    finally:
        held.release()


@pytest.mark.parametrize("change", [
    {"host": "evil\x1b[31mred"}, {"host": "a\nb"}, {"host": "h" * 10_000}, {"host": ""}, {"host": "a b"},
    {"host": 7}, {"since": 1733000000}, {"since": "now"}, {"since": "2026-13-40 99:99:99"},
    {"since": "2026-01-02 03:04:05\x1b[2J"}, {"pid": "123"}, {"pid": True}, {"pid": -1}, {"pid": 0},
    {"pid": 10**40}, {"pid": 1.5}, {"pid": None},
], ids=lambda c: repr(c)[:40])
def test_a_field_not_as_written_is_unreadable(tmp_path: Path, change: dict) -> None:
    lock = tmp_path / LOCK_FILE
    lock.write_text(json.dumps({**GOOD, **change}))
    assert describe_holder(lock) == UNREADABLE


@pytest.mark.parametrize("content", [b"{", b"[1, 2]", b"null", b'"text"', b"\xff\xfe", b"[" * 100_000,
                                     json.dumps({**GOOD, "pad": "x" * 5000}).encode()], ids=lambda c: repr(c[:16]))
def test_a_file_not_as_written_is_unreadable(tmp_path: Path, content: bytes) -> None:
    lock = tmp_path / LOCK_FILE
    lock.write_bytes(content)
    assert describe_holder(lock) == UNREADABLE


def test_a_lock_path_that_is_a_folder_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).mkdir()
    assert describe_holder(tmp_path / LOCK_FILE) == UNREADABLE


HOLDER = """
import sys, time
from deepseek.training.run_lock import try_lock
assert try_lock(sys.argv[1]) is not None
print("locked", flush=True)
time.sleep(600)
"""


def test_a_live_holder_with_an_escape_sequence_gives_one_plain_line(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_FILE
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert try_lock(lock) is None
        lock.write_text(json.dumps({**GOOD, "pid": holder.pid, "host": "\x1b]0;owned\x07" + "h" * 10_000}))
        with command_line():  # as deepseek train --resume calls it
            error = live_run_holding(tmp_path)
        assert isinstance(error, RunFolderBusy)
        assert str(error) == (f"run folder {tmp_path} is in use by another live job ({UNREADABLE}); wait for it to "
                              "end or stop it, or pick another --run-dir / logging.name")
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_file_that_is_a_fifo_is_unreadable_not_waited_on(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    lock = tmp_path / LOCK_FILE
    os.mkfifo(lock)
    assert past_fifo(lock, lambda: describe_holder(lock)) == UNREADABLE
