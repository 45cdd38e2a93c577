"""What each answer of the job service's API must hold for ``deepseek jobs`` / ``deepseek
tenants`` to use it: the keys and their types, per call. :func:`check` is the one place an
answer is checked (``Client.request`` calls it); an answer without a key the call reads, or with
a value of another type, is one line naming the server, the call and the key (exit 2), never a
``KeyError`` or ``TypeError`` of the command that reads it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deepseek.errors import UsageError


@dataclass(frozen=True)
class Kind:
    """A JSON value's type, as the error names it (``what``) and as it is tested."""

    what: str
    test: Callable[[Any], bool]


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


TEXT = Kind("a string", lambda v: isinstance(v, str))
INT = Kind("a whole number", _int)
INT_OR_NULL = Kind("a whole number or null", lambda v: v is None or _int(v))
TEXT_OR_NULL = Kind("a string or null", lambda v: v is None or isinstance(v, str))
FLAG = Kind("true or false", lambda v: isinstance(v, bool))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
ROLES = Kind("an object of tenant names and roles",
             lambda v: isinstance(v, dict) and all(isinstance(r, str) for r in v.values()))


@dataclass(frozen=True)
class Shape:
    """An answer: an object with ``keys`` (``rows=False``) or a list of such objects (``rows=True``);
    ``nested`` checks a key's value (a list of objects) with another shape."""

    keys: dict[str, Kind] = field(default_factory=dict)
    rows: bool = False
    nested: dict[str, Shape] = field(default_factory=dict)


ANY_OBJECT = Shape()
ME = Shape({"tenants": ROLES})
JOB = Shape({"id": INT, "state": TEXT, "command": TEXT, "user": TEXT, "exit_code": INT_OR_NULL,
             "created_at": TEXT_OR_NULL, "workspace": TEXT_OR_NULL})
JOBS = Shape(JOB.keys, rows=True)
LOG_PART = Shape({"text": TEXT, "next_offset": INT, "state": TEXT})
TENANT = Shape({"name": TEXT, "quota": OBJECT})
TENANTS = Shape({"name": TEXT, "role": TEXT, "quota": OBJECT}, rows=True)
MEMBERSHIP = Shape({"user": TEXT, "role": TEXT, "tenant": TEXT})
NEW_TOKEN = Shape({"token": TEXT, "token_id": TEXT, "user": TEXT, "expires_at": TEXT_OR_NULL})
AUDIT = Shape({k: TEXT for k in ("actor", "tenant", "action", "target", "result")} | {"at": TEXT_OR_NULL},
              rows=True)
FILES = Shape({"truncated": FLAG},
              nested={"entries": Shape({"path": TEXT, "type": TEXT, "size": INT_OR_NULL}, rows=True)})


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
            problem = _problem(row, Shape(shape.keys, nested=shape.nested), f"{at}[{i}]")
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
    """A JSON value's type, for the error (never the value: it may be long or hold a line break)."""
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
