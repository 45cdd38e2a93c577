"""A user's file checked, then read: ``bench --against``'s baseline JSON and ``deepseek run``'s
script. The path can be replaced by a FIFO right after its check (a plain read then waits for a
writer forever); the read itself takes a regular file only, so the command reads the file it
checked or refuses in one line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.bench.baseline import load_baseline
from deepseek.cli.run_cmd import _compiled
from deepseek.errors import UsageError


def _said(fn: Callable[[], Any]) -> Callable[[], str]:
    def call() -> str:
        with pytest.raises(UsageError) as info:
            fn()
        return str(info.value)
    return call


def test_a_baseline_swapped_for_a_fifo_after_its_check_is_one_line(
        tmp_path: Path, fifo_after_is_file: Callable[[Path], None], past_fifo: Callable[..., Any]) -> None:
    base = tmp_path / "base.json"
    base.write_text("{}")
    fifo_after_is_file(base)
    said = past_fifo(base, _said(lambda: load_baseline(str(base), "train")))
    assert "give the file 'deepseek bench train --json' wrote" in said, said
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert past_fifo(fifo, _said(lambda: load_baseline(str(fifo), "train"))).endswith(
        "not a regular file (a FIFO, device or socket); give the file 'deepseek bench train --json' wrote")


def test_a_script_that_is_a_fifo_is_refused_unread(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    fifo = tmp_path / "train.py"
    os.mkfifo(fifo)
    assert past_fifo(fifo, _said(lambda: _compiled(fifo, "train.py"))) == (
        "run: 'train.py' cannot be read (not a regular file (a FIFO, device or socket)); give a readable Python script")
