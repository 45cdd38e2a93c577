"""The run folder's ``tokenizer.json`` checked against the digest its checkpoint records is read
once, a regular file only: a FIFO put in its place after the check that it is a file is named in
one line with the fix (was: 'check its permissions'), never waited on; the copy itself is checked
and used as before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.data.tokenizer import tokenizer_identity, with_run_tokenizer
from deepseek.errors import CheckpointError


def test_a_run_tokenizer_replaced_after_its_check_is_one_line(
        tmp_path: Path, fifo_after_is_file: Callable[[Path], None], past_fifo: Callable[..., Any]) -> None:
    copy = tmp_path / "tokenizer.json"
    copy.write_text('{"model": {}}')
    state = {"data": {"tokenizer": tokenizer_identity(copy)}}
    config = {"data": {"tokenizer": "elsewhere/tokenizer.json"}}
    assert with_run_tokenizer(config, tmp_path, state)["data"]["tokenizer"] == str(copy)  # its own copy, checked
    fifo_after_is_file(copy)
    with pytest.raises(CheckpointError) as caught:
        past_fifo(copy, lambda: with_run_tokenizer(config, tmp_path, state))
    assert str(caught.value) == (f"{copy}: cannot read the run's tokenizer (not a regular file (a FIFO, device or "
                                 "socket)); put back the run's own tokenizer.json")
