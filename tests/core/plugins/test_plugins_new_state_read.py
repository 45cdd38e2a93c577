"""The training callback ``deepseek plugins new`` generates reads its state file back once through
``deepseek.parsing.read_text`` (a resumed run): a FIFO or a folder in its place is one line naming
it (exit 2), never waited on; a missing file starts the average afresh; a file the callback wrote
gives the average at the resumed step."""

from __future__ import annotations

import json
import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.errors import UsageError
from deepseek.plugins.scaffold import render


def _plugin() -> types.ModuleType:
    module = types.ModuleType("deepseek_acme_plugin")
    exec(compile(render("acme")["src/deepseek_acme/plugin.py"], "plugin.py", "exec"), module.__dict__)  # noqa: S102
    return module


def test_the_generated_callback_reads_its_state_once(tmp_path: Path, past_fifo: Callable[..., Any],
                                                   fifo_after_is_file: Callable[[Path], None]) -> None:
    plugin = _plugin()
    trainer = types.SimpleNamespace(run_dir=tmp_path, step=20)
    state = tmp_path / plugin.STATE_FILE
    plugin.deepseek_train_start(trainer)
    assert plugin._loss_ema[id(trainer)] is None  # no file: afresh
    state.write_text(json.dumps({"step": 10, "ema": 1.5}) + "\n" + json.dumps({"step": 20, "ema": 0.75}) + "\n")
    plugin.deepseek_train_start(trainer)
    assert plugin._loss_ema[id(trainer)] == 0.75
    state.unlink()
    for make, there in ((os.mkfifo, "not a regular file (a FIFO, device or socket)"), (os.mkdir, "Is a directory")):
        make(state)
        with pytest.raises(UsageError) as caught:  # a FIFO was waited on; a folder was IsADirectoryError
            past_fifo(state, lambda: plugin.deepseek_train_start(trainer))
        assert str(caught.value) == (f"{state}: cannot be read ({there}); put back the file deepseek-acme wrote "
                                     "there, or remove it to start the average afresh")
        (os.rmdir if state.is_dir() else os.unlink)(state)
    state.write_text(json.dumps({"step": 20, "ema": 0.5}) + "\n")
    fifo_after_is_file(state)  # a FIFO in its place right after any check that it is a file
    try:
        past_fifo(state, lambda: plugin.deepseek_train_start(trainer))
    except UsageError as exc:
        assert "not a regular file (a FIFO, device or socket)" in str(exc)
    else:  # read before any check, so as it was
        assert plugin._loss_ema[id(trainer)] == 0.5
