"""The failure report reads each failed rank's log from its end (``deepseek.parsing.read_tail``):
a long run's log of gigabytes is not read whole (its last lines, or the stack a hung rank dumped,
come from its last bytes), and a FIFO in a log's place does not block the launcher."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from deepseek_pro.launch.heartbeat import Beat, Watchdog
from deepseek_pro.launch.runner import EXIT_HUNG, failure_report


def _failure(rank: int, exitcode: int) -> SimpleNamespace:
    return SimpleNamespace(local_rank=rank, pid=1000 + rank, exitcode=exitcode, timestamp=100, signal_name=lambda: "")


def _huge_log(path: Path, end: str) -> None:
    with open(path, "wb") as fh:  # 256 MiB of (sparse) log before its end
        fh.truncate(256 << 20)
        fh.seek(0, os.SEEK_END)
        fh.write(("\n" + end).encode())


def _peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_huge_log_gives_its_last_line_and_a_fifo_none(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    logs = {0: tmp_path / "0.log", 1: tmp_path / "1.log"}
    _huge_log(logs[0], "step 9\nerror: data.path: 'x' does not exist\n")
    os.mkfifo(logs[1])
    failures = {0: _failure(0, 2), 1: _failure(1, -15)}
    report, peak = _peak(lambda: past_fifo(logs[1], lambda: failure_report(failures, None, logs.__getitem__)))
    assert report.message == "rank 0 (pid 1000) exited with code 2: data.path: 'x' does not exist; the other ranks were stopped"
    assert report.tail == ["step 9", "error: data.path: 'x' does not exist"]
    assert peak < 4 << 20, peak


def test_a_hung_ranks_stack_is_found_in_a_huge_log_with_lines_after_it(tmp_path: Path) -> None:
    dog = Watchdog(tmp_path, timeout=1, startup_timeout=1)
    dog.verdict, dog.stuck = "rank 1 made no progress for 9 s", [Beat(1, 5, 3, "step", 2, 0.0)]
    # the dump, then 200 KiB that other threads printed after it: past a last-lines read, within the stack's
    after = "".join(f"worker {i} still loading\n" for i in range(8000))
    _huge_log(tmp_path / "1.log", "Current thread 0x1 (most recent call first):\n  File \"plugin.py\", line 11 in "
                                  "hook\n  File \"cli.py\", line 2 in main\n" + after)
    report, peak = _peak(lambda: failure_report({1: _failure(1, -9)}, dog, lambda r: tmp_path / f"{r}.log"))
    assert report.exit_code == EXIT_HUNG and report.tail[:2] == [
        "Current thread 0x1 (most recent call first):", '  File "plugin.py", line 11 in hook']
    assert peak < 16 << 20, peak
