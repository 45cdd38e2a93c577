"""What each answer of the job service's API must hold for ``deepseek jobs`` / ``deepseek
tenants`` to use it: the keys, their types and their values, per call. :func:`check` is the one
place an answer is checked (``Client.request`` calls it); an answer without a key the call reads,
or with a value of another type or out of what the server can send (a negative count or size, an
exit code outside 0-255, a state or role the service does not have, a time that is not ISO 8601
or outside the years 2000-2999, a file path outside the job's workspace, a workspace that is not
``.../jobs/<id>`` of that job), is one line naming the server, the call and the key (exit 2),
never a ``KeyError`` or ``TypeError`` of the command that reads it nor a value printed as if it
were true. Values read back are checked like user input."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deepseek.errors import UsageError
from deepseek_enterprise.service.names import JOB_STATES, ROLES, name_problem


@dataclass(frozen=True)
class Kind:
    """A JSON value's type, as the error names it (``what``) and as it is tested."""

    what: str
    test: Callable[[Any], bool]


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count(v: Any) -> bool:
    return _int(v) and v >= 0


def _time(v: Any) -> bool:
    """An ISO 8601 date and time (as the server writes ``isoformat()``) in the years 2000-2999."""
    import datetime as dt

    try:
        return isinstance(v, str) and 2000 <= dt.datetime.fromisoformat(v).year <= 2999
    except ValueError:
        return False


def _relative(v: Any) -> bool:
    """A path below the job's workspace: relative, no ``..``, no empty or NUL part."""
    from pathlib import PurePosixPath

    return (isinstance(v, str) and bool(v) and not v.startswith("/") and "\0" not in v
            and ".." not in PurePosixPath(v).parts)


def _workspace(v: Any) -> bool:
    """A job's workspace as the server names it: an absolute path ``.../jobs/<id>`` without ``..``."""
    from pathlib import PurePosixPath

    parts = PurePosixPath(v).parts if isinstance(v, str) else ()
    return (len(parts) >= 3 and parts[0] == "/" and ".." not in parts and parts[-2] == "jobs"
            and parts[-1].isdigit() and "\0" not in v)


def _quota(v: Any) -> bool:
    return isinstance(v, dict) and all(
        x is None or (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0)
        for x in v.values())


TEXT = Kind("a string", lambda v: isinstance(v, str))
ID = Kind("a whole number from 1", lambda v: _int(v) and v >= 1)
COUNT = Kind("a whole number from 0", _count)
SIZE_OR_NULL = Kind("a whole number from 0 or null", lambda v: v is None or _count(v))
EXIT_CODE = Kind("an exit code (0-255) or null", lambda v: v is None or (_int(v) and 0 <= v <= 255))
TIME_OR_NULL = Kind("a date and time (ISO 8601, years 2000-2999) or null", lambda v: v is None or _time(v))
STATE = Kind(f"a job state ({', '.join(JOB_STATES)})", lambda v: isinstance(v, str) and v in JOB_STATES)
ROLE = Kind(f"a role ({', '.join(ROLES)})", lambda v: isinstance(v, str) and v in ROLES)
NAME = Kind("a tenant or user name", lambda v: isinstance(v, str) and name_problem(v) is None)
WORKSPACE = Kind("an absolute path ending in jobs/<id>", _workspace)
RELATIVE_PATH = Kind("a path inside the job's workspace", _relative)
ENTRY_TYPE = Kind("file, dir, link or other", lambda v: isinstance(v, str) and v in ("file", "dir", "link", "other"))
TOKEN_ID = Kind("12 hex digits", lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{12}", v) is not None)
FLAG = Kind("true or false", lambda v: isinstance(v, bool))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
QUOTA = Kind("an object of limits (numbers from 0, or null)", _quota)
ROLES_BY_TENANT = Kind("an object of tenant names and roles",
                       lambda v: isinstance(v, dict) and all(NAME.test(t) and ROLE.test(r) for t, r in v.items()))


@dataclass(frozen=True)
class Shape:
    """An answer: an object with ``keys`` (``rows=False``) or a list of such objects (``rows=True``);
    ``nested`` checks a key's value (a list of objects) with another shape."""

    keys: dict[str, Kind] = field(default_factory=dict)
    rows: bool = False
    nested: dict[str, Shape] = field(default_factory=dict)
    rule: Callable[[dict[str, Any]], str | None] | None = None
    """A check across keys, run once they all passed: ``None``, or the problem as a format string
    of the answer's keys (``"with workspace = {workspace!r}, ..."``)."""


ANY_OBJECT = Shape()
ME = Shape({"tenants": ROLES_BY_TENANT})
JOB = Shape({"id": ID, "state": STATE, "command": TEXT, "user": NAME, "exit_code": EXIT_CODE,
             "created_at": TIME_OR_NULL, "workspace": WORKSPACE},
            rule=lambda job: None if job["workspace"].rsplit("/", 1)[-1] == str(job["id"]) else
            "with workspace = {workspace!r}, the workspace of another job than {id}")
JOBS = Shape(JOB.keys, rows=True, rule=JOB.rule)
LOG_PART = Shape({"text": TEXT, "next_offset": COUNT, "state": STATE})
TENANT = Shape({"name": NAME, "quota": QUOTA})
TENANTS = Shape({"name": NAME, "role": ROLE, "quota": QUOTA}, rows=True)
MEMBERSHIP = Shape({"user": NAME, "role": ROLE, "tenant": NAME})
NEW_TOKEN = Shape({"token": TEXT, "token_id": TOKEN_ID, "user": NAME, "expires_at": TIME_OR_NULL})
AUDIT = Shape({k: TEXT for k in ("actor", "action", "target", "result")} | {"tenant": TEXT, "at": TIME_OR_NULL},
              rows=True)
FILES = Shape({"truncated": FLAG},
              nested={"entries": Shape({"path": RELATIVE_PATH, "type": ENTRY_TYPE, "size": SIZE_OR_NULL}, rows=True)})


def check(answer: Any, shape: Shape, where: str) -> Any:
    """``answer`` if it has ``shape``; else the one-line error (``where``: ``--server URL: answered
    GET /v1/...``)."""
    problem = _problem(answer, shape, "")
    if problem:
        raise UsageError(f"{where} {problem}; is it a deepseek server of this version?")
    return answer


def _problem(answer: Any, shape: Shape, at: str) -> str | None:
    if shape.rows:
        if not isinstance(answer, list):
            return f"with {_name(answer)} where a list{' at ' + at if at else ''} was expected"
        for i, row in enumerate(answer):
            problem = _problem(row, Shape(shape.keys, nested=shape.nested, rule=shape.rule), f"{at}[{i}]")
            if problem:
                return problem
        return None
    if not isinstance(answer, dict):
        return f"with {_name(answer)} where an object{' at ' + at if at else ''} was expected"
    for key, kind in shape.keys.items():
        if key not in answer:
            return f"without the key {_join(at, key)}"
        if not kind.test(answer[key]):
            return f"with {_join(at, key)} = {_name(answer[key])}, not {kind.what}"
    if shape.rule is not None:
        problem = shape.rule(answer)
        if problem:
            return f"{at + ' ' if at else ''}{problem.format(**answer)}"
    for key, inner in shape.nested.items():
        if key not in answer:
            return f"without the key {_join(at, key)}"
        problem = _problem(answer[key], inner, _join(at, key))
        if problem:
            return problem
    return None


def _join(at: str, key: str) -> str:
    """A key's place in the answer: ``exit_code``, ``[3].exit_code``, ``entries[0].size``."""
    return f"{at}.{key}" if at else key


def _name(value: Any) -> str:
    """A JSON value for the error: a number or a short string as it is (a string's line breaks
    escaped), anything else by its type (it may be long)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and len(repr(value)) <= 40:
        return repr(value)
    if isinstance(value, str) and len(value) <= 60:
        return repr(value)
    return {dict: "an object", list: "a list", str: "a long string", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
