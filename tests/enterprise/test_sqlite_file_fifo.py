"""``sqlite_problem`` (a service's or a study's database file checked before SQLAlchemy or Optuna
opens it) reads the header through ``deepseek.parsing.open_file``: a FIFO there is one phrase,
never waited on; what the file holds is judged by what SQLite's own connection opened."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek_enterprise import sqlite_files
from deepseek_enterprise.sqlite_files import sqlite_problem


def test_a_database_that_is_a_fifo_is_refused_unread(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    db = tmp_path / "study.db"
    os.mkfifo(db)
    assert past_fifo(db, lambda: sqlite_problem(db, "an Optuna study's", frozenset({"studies"}))) == (
        "cannot be read (not a regular file (a FIFO, device or socket))")


def test_a_database_emptied_after_its_header_was_read_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header was read through one open, the tables through SQLite's: a file emptied between
    the two (here the moment before SQLite opens it) had a header and no tables, "a readable
    database without tables", and SQLAlchemy would then have made it a fresh database, the jobs
    gone. Judged by what SQLite opened (its page count), it is an empty file, as when emptied before."""
    db = tmp_path / "service.db"
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE jobs (id INTEGER)")
        con.commit()
    assert sqlite_problem(db, "a service's", frozenset({"jobs"})) is None
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db.write_bytes(b"")  # emptied (a truncation, a full disk) after its header was read
        return real(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(sqlite_files, "CREATION_WAIT_S", 0.1)
    assert sqlite_problem(db, "a service's", frozenset({"jobs"})) == "is empty"
