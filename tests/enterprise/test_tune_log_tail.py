"""What a failed trial said last (``tune.process.tail``) comes from its train.log's end: a long
run's log of gigabytes is not read whole, a FIFO in its place says nothing and does not block."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek_enterprise.tune.process import tail


def test_the_last_lines_of_a_huge_log_and_none_of_a_fifo(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    log = tmp_path / "train.log"
    with open(log, "wb") as fh:  # 256 MiB of (sparse) log, then its last lines
        fh.truncate(256 << 20)
        fh.seek(0, os.SEEK_END)
        fh.write(b"\nstep 9\n\nerror: out of memory; ask for less\n  \n")
    tracemalloc.start()
    try:
        said = tail(log, 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert said == "step 9 | error: out of memory; ask for less"
    assert peak < 4 << 20, peak
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    assert past_fifo(fifo, lambda: tail(fifo)) == ""
    assert tail(tmp_path / "missing.log") == "" and tail(tmp_path) == ""
