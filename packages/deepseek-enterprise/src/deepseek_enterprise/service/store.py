"""Where the service keeps its state: the engine, transactions, the append-only audit log and
the bootstrap of a new database.

Any SQLAlchemy URL works (``postgresql+psycopg://...`` in production); the default is SQLite in
WAL mode (readers never block the writer). On SQLite every transaction starts with ``BEGIN
IMMEDIATE``, so check-then-insert sequences such as a quota check and a submit are serialised
between threads and processes (within the server process the threads also queue on a lock of the
store first: SQLite's busy handler would make them sleep and retry, up to seconds under load); on other databases the tenant row is locked (``SELECT ... FOR
UPDATE``) where that matters.

The audit log is append-only at two layers: the ORM refuses to flush an update or a delete of an
:class:`AuditEntry`, and in the database triggers abort any statement that tries, whoever sends
it: on SQLite ``BEFORE UPDATE`` / ``BEFORE DELETE``, on PostgreSQL ``BEFORE UPDATE OR DELETE``
(each row) and ``BEFORE TRUNCATE``, both calling ``audit_append_only()``. The owner of the table
can still drop the triggers or the table: that layer stops mistakes and ordinary clients, not the
database's administrator.

Every row is checked when the store opens (:mod:`.rowcheck`): a value edited or damaged in the
database is one line before the API answers, not an internal error in a later request.

Tables and triggers are created when missing (``CREATE TABLE``/``TRIGGER`` where absent); on
PostgreSQL in the connection's current schema, so a URL with ``?options=-csearch_path%3DNAME``
keeps one service's tables in schema NAME.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from deepseek.errors import UsageError
from deepseek_enterprise.db_url import masked_secrets, shown_url
from deepseek_enterprise.service import rowcheck, tokens
from deepseek_enterprise.service.models import AuditEntry, Base, Token, User

_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END",
)


_PG_FUNCTION = ("CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$")
_PG_TRIGGERS = {
    "audit_no_update": "CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit "
                       "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
    "audit_no_truncate": "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
                         "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
}


def _check_columns(engine: Engine, url: str) -> None:
    """One line when a table made by an older build lacks columns this build uses (``create_all``
    adds missing tables, never columns; there are no migrations yet)."""
    from sqlalchemy import inspect

    inspector = inspect(engine)
    missing = [f"{table.name}.{column.name}" for table in Base.metadata.sorted_tables
               for have in [{c["name"] for c in inspector.get_columns(table.name)}]
               for column in table.columns if column.name not in have]
    if missing:
        raise UsageError(
            f"--db {shown_url(url)}: the database was made by an older deepseek-enterprise and lacks the columns "
            f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}; there are no migrations yet: start "
            "the server on a new database, or add those columns by hand"
        )


class AppendOnlyError(RuntimeError):
    """Something tried to change or delete an audit entry."""


class Store:
    """The database of one server: ``session()`` is a transaction (committed on success, rolled
    back on an exception)."""

    def __init__(self, url: str) -> None:
        self.url = url
        _check_sqlite_file(url)
        self.engine = _engine(url)
        self.sqlite = self.engine.dialect.name == "sqlite"
        _connect(self.engine, url)
        Base.metadata.create_all(self.engine)
        _check_columns(self.engine, url)
        rowcheck.check_rows(self.engine, shown_url(url))
        with self.engine.begin() as conn:
            if self.sqlite:
                for ddl in _TRIGGERS:
                    conn.execute(text(ddl))
            elif self.engine.dialect.name == "postgresql":
                conn.execute(text(_PG_FUNCTION))
                have = set(conn.scalars(text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit'::regclass")))
                for name, ddl in _PG_TRIGGERS.items():
                    if name not in have:
                        conn.execute(text(ddl))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.sqlite else contextlib.nullcontext())
        event.listen(self._sessions, "before_flush", _guard_audit)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        with self._writer, self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def audit(self, actor: str, action: str, *, tenant: str = "", target: str = "", result: str = "ok",
              session: Session | None = None) -> None:
        """Append one audit entry, in ``session``'s transaction or in a transaction of its own."""
        entry = AuditEntry(actor=actor[:63], tenant=tenant[:63], action=action[:63], target=target[:255],
                           result=result[:2000])
        if session is not None:
            session.add(entry)
            return
        with self.session() as s:
            s.add(entry)

    def is_new(self) -> bool:
        with self.session() as s:
            return s.scalar(select(User.id).limit(1)) is None

    def bootstrap(self, name: str = "admin") -> str | None:
        """On a database without users: a platform admin ``name`` and a token for it, returned
        (shown once). None when the database already has users."""
        with self.session() as s:
            if s.scalar(select(User.id).limit(1)) is not None:
                return None
            user = User(name=name, platform_admin=True)
            s.add(user)
            s.flush()
            token, token_id, hashed = tokens.new_token()
            s.add(Token(token_id=token_id, secret_hash=hashed, user_id=user.id, name="bootstrap"))
            self.audit("server", "bootstrap", target=f"user {name}", session=s)
        return token


def _check_sqlite_file(url: str) -> None:
    """One line when ``url`` names an SQLite file that exists but is no readable database: SQLAlchemy
    would take an emptied file for a new database (a new admin, every tenant, job and audit entry
    gone) and fail on another kind of file with a DatabaseError."""
    from deepseek_enterprise.sqlite_files import FOREIGN, sqlite_database, sqlite_problem

    database = sqlite_database(url)
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists() or path.is_symlink():
        problem = sqlite_problem(path, "a deepseek service's", frozenset(Base.metadata.tables))
        if problem is not None and problem.startswith(FOREIGN):
            raise UsageError(f"--db: {path} {problem}; give the service a database of its own")
        if problem is not None:
            raise UsageError(f"--db: the service database {path} {problem}, so its tenants, jobs and audit log "
                             "cannot be read; restore it from a backup, or move it away to start a new database")


def _connect(engine: Engine, url: str) -> None:
    """One line when the database cannot be reached at all (an SQLite file whose folder is missing, a
    database server that is down or refuses the login): SQLAlchemy's OperationalError was reported as
    an internal error. Only the first connection is judged here: an error after it is the server's."""
    from sqlalchemy.exc import OperationalError

    try:
        engine.connect().close()
    except OperationalError as exc:
        engine.dispose()
        reason = masked_secrets(" ".join(str(exc.orig if exc.orig is not None else exc).split()))
        fix = ("give a file in an existing folder" if engine.dialect.name == "sqlite"
               else "check the URL and that the database server is running and takes this login")
        raise UsageError(f"--db {shown_url(url)}: cannot open the database ({reason}); {fix}") from None


def _engine(url: str) -> Engine:
    if url.startswith("postgresql+psycopg:"):  # psycopg 3, the postgres extra's driver
        from deepseek.extras import check_extra

        check_extra("postgres", where="--db", edition="deepseek-enterprise")
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # an unknown dialect or a missing driver
        raise UsageError(f"--db {shown_url(url)}: {exc.__class__.__name__}: {masked_secrets(str(exc).splitlines()[0])}; give an "
                         "SQLAlchemy URL whose driver is installed, e.g. sqlite:///PATH or "
                         "postgresql+psycopg://USER@HOST/DB") from None


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _guard_audit(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, AuditEntry):
            raise AppendOnlyError("audit log is append-only: entries are never changed or deleted")
