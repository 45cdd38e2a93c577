"""``deepseek.parsing.read_tail``, the one reader of a log's end (a trial's train.log, a failed
rank's log, a service job's log): the last bytes of a regular file of any length, one seek from
the end, the cut first line left out; a FIFO refused without waiting for a writer, a link refused
when asked."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.parsing import UnreadableFile, read_tail


def test_the_last_bytes_whole_lines_only(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"first line\nsecond\nthird\n")
    assert read_tail(log, 1000) == "first line\nsecond\nthird\n"  # the whole file: nothing cut
    assert read_tail(log, 10) == "third\n"  # starts inside 'second': that line left out
    assert read_tail(log, 13) == "second\nthird\n"  # starts right after a newline: nothing cut
    assert read_tail(log, 4) == ""  # inside the last line: no whole line
    log.write_bytes(b"a\n\xc3\xa9\xff\n")
    assert read_tail(log, 100) == "a\n\u00e9\ufffd\n"  # bytes that are no UTF-8 replaced


def test_a_huge_log_is_read_from_its_end_only(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    with open(log, "wb") as fh:  # 256 MiB of (sparse) log, then its last lines
        fh.truncate(256 << 20)
        fh.seek(0, os.SEEK_END)
        fh.write(b"\nstep 9\nerror: boom\n")
    tracemalloc.start()
    try:
        text = read_tail(log, 64 << 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text == "step 9\nerror: boom\n"  # the zeros before are one cut line
    assert peak < 1 << 20, peak


def test_a_fifo_is_refused_unread_and_a_link_when_asked(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    fifo = tmp_path / "train.log"
    os.mkfifo(fifo)

    def read() -> str:
        with pytest.raises(UnreadableFile, match="not a regular file"):
            read_tail(fifo, 100)
        return "refused"

    assert past_fifo(fifo, read) == "refused"
    (tmp_path / "real.log").write_text("said\n")
    (tmp_path / "link.log").symlink_to(tmp_path / "real.log")
    assert read_tail(tmp_path / "link.log", 100) == "said\n"
    with pytest.raises(OSError):
        read_tail(tmp_path / "link.log", 100, follow_links=False)
    with pytest.raises(IsADirectoryError):
        read_tail(tmp_path, 100)
