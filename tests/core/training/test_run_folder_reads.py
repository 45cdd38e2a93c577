"""What a run's start reads of its folder's kept files (``run_folder.copy_run_files``: the dataset's
tokenizer copied in; ``keep_edited_config``: a resume setting an edited config.toml aside) is read
as a file read back is: a FIFO is refused rather than waited on, and a file far larger than what
it is compared with is not read whole (``read_bytes`` read a 2 GiB file into memory, and waited
for a writer on a FIFO swapped in after its ``is_file`` check)."""

from __future__ import annotations

import os
import re
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deepseek.data.bpe import MAX_TOKENIZER_BYTES
from deepseek.errors import UsageError
from deepseek.training.run_folder import copy_run_files, keep_edited_config

LARGE = 64 << 20
"""A file larger than the 16 MiB a config read back takes (sparse: no disk space)."""


def _sparse(path: Path, size: int) -> Path:
    with path.open("ab") as fh:
        fh.truncate(size)
    return path


@pytest.fixture
def peak() -> Iterator[Callable[[], int]]:
    """The most bytes Python held at once since the test started (a file read whole shows as its size)."""
    tracemalloc.start()
    yield lambda: tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()


def test_a_source_that_is_a_fifo_or_larger_than_a_tokenizer_is_refused_unread(tmp_path: Path, past_fifo: Any) -> None:
    run = tmp_path / "run"
    run.mkdir()
    fifo = tmp_path / "tok.fifo"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=rf"^run folder: cannot copy {re.escape(str(fifo))} into it \(not a regular file \(a FIFO, "
                                         r"device or socket\)\); check the file$"):
        past_fifo(fifo, lambda: copy_run_files({"tokenizer.json": fifo}, run))
    huge = _sparse(tmp_path / "huge.json", MAX_TOKENIZER_BYTES + 1)  # read and written whole: 256 MiB into the run
    with pytest.raises(UsageError, match=rf"cannot copy {re.escape(str(huge))} into it \(larger than 268,435,456 bytes"):
        copy_run_files({"tokenizer.json": huge}, run)
    assert os.listdir(run) == []


def test_a_copy_larger_than_its_source_is_replaced_unread(tmp_path: Path, peak: Callable[[], int]) -> None:
    """Compared with the source's bytes: no more of it is read than the source holds."""
    run = tmp_path / "run"
    run.mkdir()
    source = tmp_path / "tokenizer.json"
    source.write_text('{"model": {}}')
    _sparse(run / "tokenizer.json", LARGE)
    copy_run_files({"tokenizer.json": source}, run)
    assert (run / "tokenizer.json").read_bytes() == source.read_bytes()
    assert peak() < 1 << 20


def test_an_edited_config_too_large_to_read_is_kept_beside_without_reading_either(
        tmp_path: Path, peak: Callable[[], int]) -> None:
    """config.toml of 64 MiB is no config (kept aside, as an edited one is); a config.edited.toml
    there already is compared with it only if config.toml could be read: both were read whole,
    found equal (all NUL bytes) and the older one replaced."""
    run = tmp_path / "run"
    run.mkdir()
    _sparse(run / "config.toml", LARGE)
    older = _sparse(run / "config.edited.toml", LARGE)
    stamp = older.stat().st_mtime_ns
    recorded: dict[str, Any] = {"train": {"lr": 0.001}}
    line = keep_edited_config(run, recorded, recorded, resume=run / "checkpoints" / "step-1")
    assert line is not None and "config.toml is not valid TOML (larger than 16,777,216 bytes" in line
    assert f"the file is kept as {run / 'config.edited-2.toml'}" in line
    assert older.stat().st_mtime_ns == stamp and (run / "config.edited-2.toml").stat().st_size == LARGE
    assert not (run / "config.toml").exists()
    assert peak() < 1 << 20
