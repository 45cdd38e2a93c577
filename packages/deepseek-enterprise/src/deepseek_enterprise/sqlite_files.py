"""SQLite database files read back like user input before a service or a study opens them.

SQLAlchemy and Optuna take an empty file for a new database and create their tables in it: an
emptied ``service.db`` or ``study.db`` would silently become a fresh one, and a file that is not a
database fails deep inside them. :func:`sqlite_problem` says what is wrong with an existing file
first, reading it only (nothing is written).

The file is read twice: its header through :func:`deepseek.parsing.open_file` (a regular file only,
so a FIFO is refused, never waited on: SQLite opens by path, with no way to be handed an open file),
then its pages through SQLite's own read-only connection. The verdict on content is the
connection's (page count, schema), so a file emptied or replaced between the two reads is judged as
SQLite found it. SQLAlchemy and Optuna open the path once more after the check (they take a URL,
not an open file): the check is for a file left wrong (emptied, damaged, another program's), which
stays wrong until they open it; a process that replaces the file in that moment could as well
replace it after they opened it, so no window the check could close is left."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from deepseek.parsing import open_file

SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""


def sqlite_database(url: str) -> str | None:
    """The ``database`` part of an SQLite URL (``""`` when it names none); ``None`` for a URL of
    another database or one that is not a URL (the engine that opens it says what is wrong)."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).database or ""
    except ArgumentError:
        return None


FOREIGN = "is another program's database "
"""How :func:`sqlite_problem`'s answer starts for a database of another program (its callers advise
a file of the program's own rather than removing it)."""

# Another process (a worker of the same study) may be creating the file right now: SQLite makes it empty and
# writes its first page (the header) a moment later, under a lock. An empty or locked file is read
# again until this long has passed before it is called empty or damaged.
CREATION_WAIT_S = 3.0


def sqlite_problem(path: Path, kind: str, own: frozenset[str]) -> str | None:
    """What is wrong with the existing SQLite file ``path`` (``None``: it is a readable database
    without tables, or one holding at least one of the ``own`` tables of a ``kind`` database).
    A database of another program is refused: its tables would be written beside its own."""
    import sqlite3

    deadline = time.monotonic() + CREATION_WAIT_S
    while True:
        try:
            with open_file(path) as fh:  # a regular file: a FIFO there is refused, never waited on
                head = fh.read(len(SQLITE_HEADER))
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        if head and head != SQLITE_HEADER:
            return "is not an SQLite database"
        busy = empty = not head
        if head:
            try:  # read-only: the schema page must parse; nothing is written
                with contextlib.closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as db:
                    pages = db.execute("PRAGMA page_count").fetchone()[0]
                    tables = sorted(row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
                if pages:
                    if tables and not own.intersection(tables):
                        shown = ", ".join(tables[:4]) + (" ..." if len(tables) > 4 else "")
                        return f"{FOREIGN}(its tables: {shown}), not {kind}"
                    return None
                busy = empty = True  # emptied since its header was read: what SQLite opened is an empty file
            except sqlite3.Error as exc:
                code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one
                if code == sqlite3.SQLITE_READONLY:
                    # A hot journal: a worker was killed inside a write (SQLITE_READONLY_ROLLBACK). The
                    # database is whole; the storage, opening it for writing, rolls the journal back.
                    return None
                if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    return f"is damaged ({exc})"
                busy = True
        if busy and time.monotonic() >= deadline:
            return "is empty" if empty else "is locked by another process that does not let go"
        time.sleep(0.05)


