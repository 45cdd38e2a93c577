"""The watchdog's reads of ``rank-*.json`` are bounded: a FIFO there (a plain open waits for a
writer that never comes, and the watchdog thread with it) and a file larger than a beat are
skipped like any other unreadable beat, next to the ranks' real beats."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek_pro.launch.heartbeat import MAX_BEAT_BYTES, read_beats


def _beat(rank: int) -> str:
    return json.dumps({"rank": rank, "pid": 1, "seq": 3, "phase": "step", "step": 2, "time": time.time()})


def test_a_fifo_a_folder_and_an_oversized_file_among_the_beats_are_skipped(
        tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    (tmp_path / "rank-0.json").write_text(_beat(0))
    os.mkfifo(tmp_path / "rank-1.json")
    (tmp_path / "rank-2.json").mkdir()
    (tmp_path / "rank-3.json").write_text(_beat(3) + " " * MAX_BEAT_BYTES)  # a beat, but past the cap
    beat = _beat(4)  # once: the time's repr is not always as long
    (tmp_path / "rank-4.json").write_text(beat + " " * (MAX_BEAT_BYTES - len(beat)))  # at the cap: read
    assert sorted(past_fifo(tmp_path / "rank-1.json", lambda: read_beats(tmp_path))) == [0, 4]
