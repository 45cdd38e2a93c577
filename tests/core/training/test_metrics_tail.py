"""``MetricsTail``: the records of a ``metrics.jsonl`` another process is appending to (a study's
trial), read as ``read_metrics`` reads them, but each read takes only the lines added since the
last one (a study polled the whole file every second: the cost grew with the run), a line still
being written is left for the next read, and a file that is no run's metrics is one line naming
it, never a wait (a FIFO) or a read without end."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.errors import UsageError
from deepseek.training.metrics import MAX_RECORD_BYTES, MetricsTail, MetricsWarning, read_metrics


def _line(step: int, loss: float = 1.0) -> str:
    return json.dumps({"step": step, "loss": loss}) + "\n"


def test_each_read_takes_the_lines_added_since_the_last_and_leaves_a_line_being_written(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read() == []  # no file yet
    path.write_text(_line(1) + _line(2) + '{"step": 3, "lo')
    assert [r["step"] for r in tail.read()] == [1, 2]  # the third is being written
    with path.open("a") as fh:
        fh.write('ss": 1.0}\n' + _line(4))
    assert [r["step"] for r in tail.read()] == [1, 2, 3, 4]
    # what was read is not read again: a first line changed in place (same length) is not seen
    path.write_bytes(path.read_bytes().replace(b'"loss": 1.0}\n{"step": 2', b'"loss": 7.0}\n{"step": 2', 1))
    assert tail.read()[0]["loss"] == 1.0 and read_metrics(path)[0]["loss"] == 7.0
    # a file replaced (a resumed run cuts its records back) is read again from its start
    (tmp_path / "cut").write_text(_line(1, 0.5))
    os.replace(tmp_path / "cut", path)
    assert tail.read() == [{"step": 1, "loss": 0.5}]


def test_the_final_read_takes_a_torn_last_line_as_read_metrics_does(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(_line(1) + '{"step": 2, "lo')
    tail = MetricsTail(path)
    assert len(tail.read()) == 1
    with pytest.warns(MetricsWarning, match=r"metrics.jsonl:2: ignoring a half-written last line"):
        assert [r["step"] for r in tail.read(final=True)] == [1]


def test_an_overlong_line_is_refused_before_its_newline_and_a_fifo_unread(
        tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    long = tmp_path / "long" / "metrics.jsonl"
    long.parent.mkdir()
    long.write_text(_line(1) + "x" * (MAX_RECORD_BYTES + 1))  # no newline yet: still one line past the cap
    with pytest.raises(UsageError, match=rf"^{long}:2: longer than 1,048,576 bytes, not a metrics record; "):
        MetricsTail(long).read()
    fifo = tmp_path / "metrics.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(UsageError) as info:
        past_fifo(fifo, MetricsTail(fifo).read)
    assert str(info.value) == (f"{fifo}: cannot read the run's metrics (not a regular file (a FIFO, device or "
                               "socket)); make it a readable file or start a new run")
