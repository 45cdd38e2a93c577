"""Every row of the service database, read back when the server starts, is checked like user
input: a value the server never writes (a date that is not a date, a quota out of its range, a job
state or role that does not exist, a job's arguments that are not a list of strings) would
otherwise surface later as an internal error in whichever request or scheduler pass reads that
row. The first such value stops the server in one line naming the table, the row, the column and
the value (:class:`~deepseek.errors.UsageError`, exit code 2), before the API answers; the
database is left as it is.

Each column is checked by its declared type (:mod:`.models`): integers within 64 bits, finite
numbers, dates, booleans, strings within their length, JSON; then the values with a meaning of
their own: names (:data:`.names.NAME`), roles, job commands and states, a quota's ranges (the
API's own request model, so one rule for both) and a job's arguments and files; and every
reference to another table's row (a job's tenant and user, ...) names a row that exists.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.engine import Engine

from deepseek.parsing import loads_json
from deepseek_enterprise.service.models import COMMANDS, Base
from deepseek_enterprise.service.names import JOB_STATES as STATES
from deepseek_enterprise.service.names import NAME, ROLES

INT64 = 1 << 63


class RowProblem(ValueError):
    """A stored value the server cannot use: ``str(exc)`` says what it is and what it should be."""


def check_rows(engine: Engine, shown_url: str) -> None:
    """Check every row of every table of :data:`.models.Base` in ``engine``; the first bad value is
    a :class:`~deepseek.errors.UsageError` naming ``shown_url``, the table, the row and the column."""
    rules = _semantic_rules()
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            names = [c.name for c in table.columns]
            key = [names.index(c.name) for c in table.primary_key.columns]
            checks = [_column_check(column, rules.get((table.name, column.name))) for column in table.columns]
            whole = rules.get((table.name, "*"))
            # JSON columns as their text, parsed by _check_type (bounded), not by the driver (psycopg's json.loads
            # recursed past the stack on a document nested 5,000 deep)
            shown = [f"CAST({c.name} AS TEXT)" if isinstance(c.type, JSON) else c.name for c in table.columns]
            result = conn.exec_driver_sql(f"SELECT {', '.join(shown)} FROM {table.name}")  # noqa: S608 - our own names
            while raws := result.fetchmany(ROWS_AT_ONCE):
                for raw in raws:
                    try:
                        for check, value in zip(checks, raw, strict=True):
                            check(value)
                        if whole is not None:
                            whole(dict(zip(names, raw, strict=True)))
                    except RowProblem as exc:
                        raise _refused(shown_url, table.name, names, key, raw, exc) from None
            for raw, column, target in _dangling(conn, table, names):
                problem = RowProblem(f"column {column} holds {raw[names.index(column)]!r}, which names no row of "
                                     f"{target}")
                raise _refused(shown_url, table.name, names, key, raw, problem)


def _refused(shown_url: str, table: str, names: list[str], key: list[int], raw: Any, exc: RowProblem) -> Exception:
    from deepseek.errors import UsageError

    where = ", ".join(f"{names[i]} {raw[i]!r}" for i in key)
    return UsageError(f"--db {shown_url}: table {table}, row with {where}: {exc}; the database was edited or is "
                      "damaged: repair that value (for SQLite with the sqlite3 shell) or restore a backup, then "
                      "start the server again")


def _dangling(conn: Any, table: Any, names: list[str]) -> Any:
    """The first row of ``table`` (``(row, column, referenced table)``) whose foreign key names no
    row: SQLite does not enforce the references, and such a job was listed and shown as a 500
    (its user has no name) or, naming no tenant, stayed queued unseen for ever. One anti-join per
    reference; the tables it references were checked before it (``sorted_tables`` order)."""
    for fk in table.foreign_keys:
        column, target = fk.parent.name, fk.column
        sql = (f"SELECT {', '.join(f't.{n}' for n in names)} FROM {table.name} t "  # noqa: S608 - our own names
               f"LEFT JOIN {target.table.name} r ON t.{column} = r.{target.name} "
               f"WHERE t.{column} IS NOT NULL AND r.{target.name} IS NULL LIMIT 1")
        row = conn.exec_driver_sql(sql).first()
        if row is not None:
            yield tuple(row), column, target.table.name


ROWS_AT_ONCE = 10_000
"""Rows read from the database per fetch."""


def _column_check(column: Any, rule: Callable[[Any], None] | None) -> Callable[[Any], None]:
    """The check of one column's values: its type and nullability, then its semantic rule; made
    once per table, with a plainly right value of a column without a rule passed by one test of
    its type (a million audit rows are read when the server starts)."""
    kind, nullable, name = column.type, column.nullable, column.name
    plain = _plainly_right(kind) if rule is None else None

    def check(value: Any) -> None:
        if plain is not None and plain(value):
            return
        try:
            _check_type(kind, value, nullable)
            if rule is not None and value is not None:
                rule(_decoded(kind, value))
        except RowProblem as exc:
            raise RowProblem(f"column {name} {exc}") from None
    return check


def _plainly_right(kind: Any) -> Callable[[Any], bool] | None:
    """A test passing the values of column type ``kind`` that :func:`_check_type` passes in the
    way the driver most often gives them (text within its length, a whole number within 64 bits,
    a date as a datetime or ISO text); anything else takes the full check, which words the
    refusal. ``None`` for the other types."""
    if isinstance(kind, JSON) or isinstance(kind, Boolean):
        return None
    if isinstance(kind, (String, Text)):
        limit = kind.length
        return (lambda v: type(v) is str) if limit is None else (lambda v: type(v) is str and len(v) <= limit)
    if isinstance(kind, Integer):
        return lambda v: type(v) is int and -INT64 <= v < INT64
    if isinstance(kind, DateTime):
        return _is_date
    return None


def _is_date(value: Any) -> bool:
    if type(value) is dt.datetime:
        return True
    if type(value) is not str:
        return False
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...{text[-12:]} ({len(text)} characters)"


def _check_type(kind: Any, value: Any, nullable: bool | None) -> None:
    """``value`` as the driver gives it back is of the column type ``kind``."""
    if value is None:
        if not nullable:
            raise RowProblem("is empty (NULL), which it may not be")
        return
    if isinstance(kind, Boolean):
        if value not in (0, 1):  # True and False compare equal to 1 and 0
            raise RowProblem(f"holds {_shown(value)}, not a boolean (0 or 1)")
    elif isinstance(kind, Integer):
        if isinstance(value, bool) or not isinstance(value, int) or not -INT64 <= value < INT64:
            raise RowProblem(f"holds {_shown(value)}, not a whole number within 64 bits")
    elif isinstance(kind, Float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RowProblem(f"holds {_shown(value)}, not a finite number")
    elif isinstance(kind, DateTime):
        if not isinstance(value, dt.datetime):
            try:
                dt.datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise RowProblem(f"holds {_shown(value)}, not a date and time") from None
    elif isinstance(kind, JSON):
        if isinstance(value, (str, bytes)):
            try:
                loads_json(value)
            except ValueError:
                raise RowProblem(f"holds {_shown(value)}, not JSON") from None
    elif isinstance(kind, (String, Text)):
        if not isinstance(value, str):
            raise RowProblem(f"holds {_shown(value)}, not text")
        if kind.length is not None and len(value) > kind.length:
            raise RowProblem(f"holds {len(value)} characters, more than its {kind.length}")


def _decoded(kind: Any, value: Any) -> Any:
    if isinstance(kind, JSON) and isinstance(value, (str, bytes)):
        return loads_json(value)
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value not in choices:
            raise RowProblem(f"holds {_shown(value)}, not one of {', '.join(choices)}")
    return check


def _name(value: Any) -> None:
    if not re.fullmatch(NAME, value):
        raise RowProblem(f"holds {_shown(value)}, not a tenant or user name (1-63 lower-case letters, digits "
                         "and '-', starting with a letter or digit)")


def _args(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise RowProblem(f"holds {_shown(value)}, not a list of strings")


def _files(value: Any) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in value.items()):
        raise RowProblem(f"holds {_shown(value)}, not an object of file names and texts")


def _at_least_zero(value: Any) -> None:
    if value < 0:
        raise RowProblem(f"holds {value}, less than 0")


def _fraction(value: Any) -> None:
    if not 0 < value <= 1:
        raise RowProblem(f"holds {value}, not in (0, 1]")


def _quota(row: Mapping[str, Any]) -> None:
    """A quota row within the ranges the API accepts (its request model, one rule for both)."""
    from pydantic import ValidationError

    from deepseek_enterprise.service.api_admin import QuotaIn

    values = {k: v for k, v in row.items() if k in QuotaIn.model_fields}
    try:
        QuotaIn.model_validate(values, strict=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        column = ".".join(str(p) for p in error["loc"])
        raise RowProblem(f"column {column} holds {_shown(values.get(column))}: {error['msg']}") from None


def _semantic_rules() -> dict[tuple[str, str], Callable[[Any], None]]:
    return {
        ("tenants", "name"): _name,
        ("users", "name"): _name,
        ("memberships", "role"): _one_of(ROLES),
        ("jobs", "command"): _one_of(COMMANDS),
        ("jobs", "state"): _one_of(STATES),
        ("jobs", "args"): _args,
        ("jobs", "files"): _files,
        ("jobs", "devices"): _at_least_zero,
        ("jobs", "attempts"): _at_least_zero,
        ("jobs", "gpu_fraction"): _fraction,
        ("device_use", "devices"): _at_least_zero,
        ("quotas", "*"): _quota,
    }
