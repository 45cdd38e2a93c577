"""Files the enterprise commands read back are read as regular files of bounded size
(``deepseek.parsing.read_text``): a study's results file checked and then replaced by a FIFO, or
far larger than any results file, is one line; a run folder's lock that is a FIFO names no holder
(the tuner's wait for a previous training), never a wait for a writer."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.errors import UsageError
from deepseek_enterprise.study_report import MAX_RESULTS_BYTES, read_results
from deepseek_enterprise.tune.run_holder import training_holder

FIX = "pass results.jsonl files of 'study'"


def test_a_results_file_swapped_for_a_fifo_after_a_check_or_too_large_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fifo_after_is_file: Callable[[Path], None],
        past_fifo: Callable[..., Any]) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text("")
    fifo_after_is_file(results)  # the race: a FIFO takes the file's place right after its check

    def read() -> Any:
        try:
            return read_results(results, FIX)
        except UsageError as exc:
            return str(exc)

    assert past_fifo(results, read) in (([], None), f"{results}: not a regular file (a folder, device, FIFO or "
                                                    f"socket); {FIX}")
    monkeypatch.undo()  # the fixture's is_file patch
    big = tmp_path / "big.jsonl"
    with big.open("wb") as fh:  # sparse: larger than any results file, never read whole
        fh.truncate(MAX_RESULTS_BYTES + 1)
    with pytest.raises(UsageError) as info:
        read_results(big, FIX)
    assert str(info.value) == f"{big}: larger than 64 MiB, more than a study's results file holds; {FIX}"


def test_a_lock_that_is_a_fifo_names_no_training_holder(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    lock = tmp_path / ".lock"
    os.mkfifo(lock)
    assert past_fifo(lock, lambda: training_holder(tmp_path, lock)) is None
