"""``sqlite_problem`` (a service's or a study's database file checked before SQLAlchemy or Optuna
opens it) reads the header through ``deepseek.parsing.open_file``: a FIFO there is one phrase,
never waited on."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek_enterprise.sqlite_files import sqlite_problem


def test_a_database_that_is_a_fifo_is_refused_unread(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    db = tmp_path / "study.db"
    os.mkfifo(db)
    assert past_fifo(db, lambda: sqlite_problem(db, "an Optuna study's", frozenset({"studies"}))) == (
        "cannot be read (not a regular file (a FIFO, device or socket))")
